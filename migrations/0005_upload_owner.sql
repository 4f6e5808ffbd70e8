-- Who declared each resumable upload: a credential's label (`token`, or `session:` and 16 hex
-- digits), so the uploads one credential leaves unfinished can be capped. Every upload from
-- before this column was declared with the token.
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT 'token';

-- A waiting upload's progress is now kept on its job row, written with its durable offset (it
-- used to live only in memory). Uploads waiting from before get theirs from the offset; the
-- percentage is the receive share (90) of the bar, as `Progress::receiving` computes it.
UPDATE jobs
SET bytes_done = (SELECT durable_offset FROM uploads WHERE uploads.job_id = jobs.id),
    progress = CASE
        WHEN bytes_total > 0 THEN
            MIN((SELECT durable_offset FROM uploads WHERE uploads.job_id = jobs.id), bytes_total)
            * 90 / bytes_total
        ELSE 0
    END
WHERE state = 'receiving' AND id IN (SELECT job_id FROM uploads);
