-- Webhooks: endpoints that accounts register, the events of their jobs (recorded by triggers
-- in the same transaction as the job's change of state, so no finished job is ever without
-- its event, whichever write path changed it), and one delivery per event and endpoint: the
-- durable outbox a sender works through.

CREATE TABLE webhook_endpoints (
    id                   TEXT PRIMARY KEY NOT NULL,
    -- The owning account by number (0: the built-in admin); `all_accounts` (admins only)
    -- receives every account's jobs' events.
    account_id           INTEGER NOT NULL,
    all_accounts         INTEGER NOT NULL DEFAULT 0 CHECK (all_accounts IN (0, 1)),
    url                  TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    -- Space-separated event types, or `*` for every one.
    events               TEXT NOT NULL,
    -- `whsec_<base64>`: signing needs the secret itself, so it cannot be kept hashed.
    secret               TEXT NOT NULL,
    -- After a rotation the old secret signs too, until `previous_until_us`.
    previous_secret      TEXT,
    previous_until_us    INTEGER,
    enabled              INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    disabled_reason      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_us           INTEGER NOT NULL,
    updated_us           INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_by_account ON webhook_endpoints (account_id, created_us);

-- One row per job and event type (so each is sent once per job), with the job as it was at
-- that moment: the columns of `jobs`, copied. A ping has no job.
CREATE TABLE webhook_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT NOT NULL,
    job_id       TEXT,
    occurred_us  INTEGER NOT NULL,
    owner_id     INTEGER,
    owner        TEXT,
    state        TEXT,
    progress     INTEGER,
    bytes_done   INTEGER,
    bytes_total  INTEGER,
    filename     TEXT,
    size         INTEGER,
    sha256       TEXT,
    content_type TEXT,
    metadata     TEXT,
    error        TEXT,
    created_us   INTEGER,
    updated_us   INTEGER,
    UNIQUE (job_id, type)
) STRICT;

CREATE TABLE webhook_deliveries (
    -- The message's `webhook-id`, kept across retries.
    id              TEXT PRIMARY KEY NOT NULL,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL REFERENCES webhook_events (id),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_us      INTEGER NOT NULL,
    updated_us      INTEGER NOT NULL,
    -- The sender sending it now (see `jobs.lease_node`).
    lease_node      TEXT,
    lease_until_us  INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_us);
-- An event's deliveries: the triggers' duplicate check and pruning look them up.
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id, endpoint_id);

-- The outbox, filled inside the job's own write. A delivery's id starts with the time in hex,
-- so new rows append to the end of its index instead of landing on a random page of it (a
-- random page is one more page written per commit, and ingestion commits are that cheap). The WHEN clause keeps a server without
-- endpoints at one index probe per job.
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
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, next_attempt_us,
        created_us, updated_us)
    SELECT 'msg_' || printf('%014x', ev.occurred_us) || lower(hex(randomblob(9))), e.id, ev.id,
        'pending', ev.occurred_us,
        ev.occurred_us, ev.occurred_us
    FROM webhook_events ev, webhook_endpoints e
    WHERE ev.job_id = NEW.id AND ev.type = 'job.created' AND e.enabled = 1
    AND (e.all_accounts = 1 OR e.account_id = NEW.owner_id)
    AND (e.events = '*' OR instr(' ' || e.events || ' ', ' job.created ') > 0)
    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.event_id = ev.id AND d.endpoint_id = e.id);
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
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, next_attempt_us,
        created_us, updated_us)
    SELECT 'msg_' || printf('%014x', ev.occurred_us) || lower(hex(randomblob(9))), e.id, ev.id,
        'pending', ev.occurred_us,
        ev.occurred_us, ev.occurred_us
    FROM webhook_events ev, webhook_endpoints e
    WHERE ev.job_id = NEW.id AND ev.type = 'job.' || NEW.state AND e.enabled = 1
    AND (e.all_accounts = 1 OR e.account_id = NEW.owner_id)
    AND (e.events = '*' OR instr(' ' || e.events || ' ', ' job.' || NEW.state || ' ') > 0)
    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.event_id = ev.id AND d.endpoint_id = e.id);
END;
