-- The outbox in two steps. A job's write records only its event (one row); the sender turns
-- events into one delivery per matching endpoint just before it sends, as many as it has
-- room to send. Making every delivery inside the job's own write (0010) nearly doubled what
-- a small ingest costs SQLite (a second row, its text key and three indexes), and under a
-- backlog it only built up rows nobody could send yet. The event is still written in the
-- job's transaction, so no finished job is ever without its event.

-- How far the fan-out has got: every event up to `through` has its deliveries. A cursor is
-- exact here because SQLite has one writer at a time and `webhook_events.id` (AUTOINCREMENT)
-- grows in commit order and is never reused; it costs the job's write nothing, where a flag on
-- the event would cost an index entry. (PostgreSQL, whose ids need not commit in order, keeps
-- a flag: postgres/0006.) Events recorded before this migration already have their deliveries.
CREATE TABLE webhook_fanout (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL
) STRICT;
INSERT INTO webhook_fanout (id, through) SELECT 1, COALESCE(MAX(id), 0) FROM webhook_events;

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
        error, created_us, updated_us)
    VALUES ('job.created', NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state,
        NEW.progress, NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256,
        NEW.content_type, NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us);
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
        error, created_us, updated_us)
    VALUES ('job.' || NEW.state, NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state,
        NEW.progress, NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256,
        NEW.content_type, NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us);
END;
