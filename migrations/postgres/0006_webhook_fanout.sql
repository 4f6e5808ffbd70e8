-- The outbox in two steps (see the SQLite migration 0012): a job's write records only its
-- event, flagged as awaiting fan-out; a sender turns events into deliveries (one per matching
-- endpoint) just before it sends, taking them with `FOR UPDATE SKIP LOCKED` so each event is
-- fanned out by one node, once.

-- Events recorded before this migration already have their deliveries.
ALTER TABLE webhook_events ADD COLUMN awaiting_fanout BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX webhook_events_awaiting_fanout ON webhook_events (id) WHERE awaiting_fanout;

CREATE OR REPLACE FUNCTION jobs_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'job.created';
    ELSIF NEW.state IS DISTINCT FROM OLD.state
          AND NEW.state IN ('completed', 'failed', 'cancelled') THEN
        kind := 'job.' || NEW.state;
    ELSE
        RETURN NULL;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints e WHERE e.enabled
        AND (e.all_accounts OR e.account_id = NEW.owner_id)
        AND (e.events = '*' OR strpos(' ' || e.events || ' ', ' ' || kind || ' ') > 0)
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (type, job_id, occurred_us, owner_id, owner, state, progress,
        bytes_done, bytes_total, filename, size, sha256, content_type, metadata, error,
        created_us, updated_us, awaiting_fanout)
    VALUES (kind, NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state, NEW.progress,
        NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256, NEW.content_type,
        NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us, TRUE)
    ON CONFLICT (job_id, type) DO NOTHING;
    RETURN NULL;
END
$$;
