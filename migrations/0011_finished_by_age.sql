-- Retention walks finished jobs oldest-changed first; this index holds just those, by age, so a
-- sweep reads the expired ones directly however many recent jobs the table has.
CREATE INDEX jobs_finished_by_updated ON jobs (updated_us)
WHERE state IN ('completed', 'failed', 'cancelled');
