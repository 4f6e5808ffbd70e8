-- The outbox in two steps. A job's write records only its event (one row, flagged as awaiting
-- fan-out); the sender turns events into one delivery per matching endpoint just before it
-- sends, as many as it has room to send. Making every delivery inside the job's own write
-- (0010) nearly doubled what a small ingest costs SQLite (a second row, its text key and three
-- indexes), and under a backlog it only built up rows nobody could send yet. The event is
-- still written in the job's transaction, so no finished job is ever without its event.

-- Events recorded before this migration already have their deliveries.
ALTER TABLE webhook_events ADD COLUMN awaiting_fanout INTEGER NOT NULL DEFAULT 0
    CHECK (awaiting_fanout IN (0, 1));
CREATE INDEX webhook_events_awaiting_fanout ON webhook_events (id) WHERE awaiting_fanout = 1;

DROP TRIGGER jobs_webhook_created;
DROP TRIGGER jobs_webhook_finished;

-- The WHEN clause keeps a server without a matching endpoint at one index probe per job.
CREATE TRIGGER jobs_webhook_created AFTER INSERT ON jobs
WHEN EXISTS (
    SELECT 1 FROM webhook_endpoints e WHERE e.enabled = 1
    AND (e.all_accounts = 1 OR e.account_id = NEW.owner_id)
    AND (e.events = '*' OR instr(' ' || e.events || ' ', ' job.created ') > 0)
)
BEGIN
    INSERT OR IGNORE INTO webhook_events (type, job_id, occurred_us, owner_id, owner, state,
        progress, bytes_done, bytes_total, filename, size, sha256, content_type, metadata,
        error, created_us, updated_us, awaiting_fanout)
    VALUES ('job.created', NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state,
        NEW.progress, NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256,
        NEW.content_type, NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us, 1);
END;

CREATE TRIGGER jobs_webhook_finished AFTER UPDATE OF state ON jobs
WHEN NEW.state <> OLD.state AND NEW.state IN ('completed', 'failed', 'cancelled')
AND EXISTS (
    SELECT 1 FROM webhook_endpoints e WHERE e.enabled = 1
    AND (e.all_accounts = 1 OR e.account_id = NEW.owner_id)
    AND (e.events = '*' OR instr(' ' || e.events || ' ', ' job.' || NEW.state || ' ') > 0)
)
BEGIN
    INSERT OR IGNORE INTO webhook_events (type, job_id, occurred_us, owner_id, owner, state,
        progress, bytes_done, bytes_total, filename, size, sha256, content_type, metadata,
        error, created_us, updated_us, awaiting_fanout)
    VALUES ('job.' || NEW.state, NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state,
        NEW.progress, NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256,
        NEW.content_type, NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us, 1);
END;
