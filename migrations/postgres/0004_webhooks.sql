-- Webhooks (see the SQLite migration 0010 for the design): endpoints, events recorded by a
-- trigger in the same transaction as the job's change of state, and one delivery per event
-- and endpoint, which the nodes' senders claim with a lease (`FOR UPDATE SKIP LOCKED`).

CREATE TABLE webhook_endpoints (
    id                   UUID PRIMARY KEY,
    account_id           BIGINT NOT NULL,
    all_accounts         BOOLEAN NOT NULL DEFAULT FALSE,
    url                  TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    events               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_until_us    BIGINT,
    enabled              BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason      TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    created_us           BIGINT NOT NULL,
    updated_us           BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_account ON webhook_endpoints (account_id, created_us);

CREATE TABLE webhook_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type         TEXT NOT NULL,
    job_id       UUID,
    occurred_us  BIGINT NOT NULL,
    owner_id     BIGINT,
    owner        TEXT,
    state        TEXT,
    progress     BIGINT,
    bytes_done   BIGINT,
    bytes_total  BIGINT,
    filename     TEXT,
    size         BIGINT,
    sha256       BYTEA,
    content_type TEXT,
    metadata     TEXT,
    error        TEXT,
    created_us   BIGINT,
    updated_us   BIGINT,
    UNIQUE (job_id, type)
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    endpoint_id     UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL REFERENCES webhook_events (id),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_us BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_us      BIGINT NOT NULL,
    updated_us      BIGINT NOT NULL,
    lease_node      TEXT,
    lease_until_us  BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_us);
-- An event's deliveries, for pruning.
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

CREATE FUNCTION jobs_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    event BIGINT;
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
        created_us, updated_us)
    VALUES (kind, NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state, NEW.progress,
        NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256, NEW.content_type,
        NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us)
    ON CONFLICT (job_id, type) DO NOTHING
    RETURNING id INTO event;
    IF event IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, next_attempt_us,
        created_us, updated_us)
    -- Time first, so new rows append to the end of the id's index (see the SQLite schema).
    SELECT 'msg_' || lpad(to_hex(NEW.updated_us), 14, '0')
        || substr(replace(gen_random_uuid()::text, '-', ''), 1, 18), e.id, event, 'pending',
        NEW.updated_us, NEW.updated_us, NEW.updated_us
    FROM webhook_endpoints e WHERE e.enabled
    AND (e.all_accounts OR e.account_id = NEW.owner_id)
    AND (e.events = '*' OR strpos(' ' || e.events || ' ', ' ' || kind || ' ') > 0);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_webhook_event AFTER INSERT OR UPDATE OF state ON jobs
FOR EACH ROW EXECUTE FUNCTION jobs_webhook_event();
