-- PostgreSQL schema: the tables the SQLite migrations (one level up; sqlx reads only the files
-- of a migrations folder, so this subfolder is not among them) have reached, written fresh,
-- since there is no PostgreSQL history to replay. Several nodes share these tables.
--
-- Times are BIGINT microseconds since the Unix epoch, as in SQLite: the store's times are
-- microsecond-precise, and an integer sorts correctly and round-trips exactly.

-- The jobs table is both the record of every job and the persistent work queue.
CREATE TABLE jobs (
    -- Insertion order: lists page by it and the queue is served by it.
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- UUIDv7, time-ordered, so the index on it grows at its end.
    id           UUID NOT NULL UNIQUE,
    -- The owning account by number (0: the built-in admin of INGEST_TOKEN), which isolation
    -- compares; `owner` is its name at creation, shown beside the job.
    owner_id     BIGINT NOT NULL,
    owner        TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'receiving', 'processing', 'completed', 'failed', 'cancelled')),
    progress     BIGINT NOT NULL DEFAULT 0,
    bytes_done   BIGINT NOT NULL DEFAULT 0,
    bytes_total  BIGINT,
    filename     TEXT,
    size         BIGINT,
    sha256       BYTEA CHECK (octet_length(sha256) = 32),
    content_type TEXT,
    -- The JSON text as it was stored: jsonb would reorder keys and respell numbers.
    metadata     TEXT NOT NULL,
    error        TEXT,
    created_us   BIGINT NOT NULL,
    updated_us   BIGINT NOT NULL
);

CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_sha256 ON jobs (sha256) WHERE sha256 IS NOT NULL;
-- An account's jobs, newest first (its list), and the bytes its files take (its storage usage).
CREATE INDEX jobs_by_owner ON jobs (owner_id, seq);
CREATE INDEX jobs_stored_by_owner ON jobs (owner_id) INCLUDE (size) WHERE sha256 IS NOT NULL;
-- Uploads in progress are few: an account's are counted at every admission.
CREATE INDEX jobs_receiving_by_owner ON jobs (owner_id) WHERE state = 'receiving';
-- An admin filters the list by the name shown, without case.
CREATE INDEX jobs_by_owner_name ON jobs (lower(owner), seq);

-- Resumable (tus) uploads: how many bytes of each are durable, and who declared it (a
-- credential's label, so the uploads one credential leaves unfinished can be capped). A
-- receiving job with a row here survives a restart; one without (a one-shot upload) fails.
CREATE TABLE uploads (
    job_id          UUID PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    durable_offset  BIGINT NOT NULL,
    -- The whole file's SHA-256 as the client declared it, if it did.
    expected_sha256 BYTEA CHECK (octet_length(expected_sha256) = 32),
    owner           TEXT NOT NULL
);

-- One row that `/readyz` rewrites to prove the database takes durable writes, not just reads.
CREATE TABLE write_probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_us BIGINT NOT NULL
);

-- Browser sessions, by the SHA-256 of the cookie value (a copy of the database does not let
-- anyone sign in), with the key that opened each (NULL: INGEST_TOKEN), so revoking it ends them.
CREATE TABLE sessions (
    id_hash    BYTEA PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    created_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    key_id     TEXT
);
CREATE INDEX sessions_by_key ON sessions (key_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_us);

-- Accounts. An identity never hands out a number twice, so a re-created name starts with none
-- of the old account's jobs or keys; it starts at 1, since 0 is the built-in `admin`, which
-- lives in the settings. Each account may carry its own quotas (NULL: the server's default).
CREATE TABLE accounts (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                    TEXT NOT NULL,
    role                    TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_us              BIGINT NOT NULL,
    max_stored_bytes        BIGINT CHECK (max_stored_bytes >= 0),
    max_uploads             BIGINT CHECK (max_uploads >= 0),
    max_requests_per_second BIGINT CHECK (max_requests_per_second >= 0)
);
-- Names are compared without case: `alice` and `Alice` are one account. (Names are ASCII, so
-- lower() means the same under every collation.)
CREATE UNIQUE INDEX accounts_by_name ON accounts (lower(name));

-- API keys, as the SHA-256 of their secret. Rows outlive their account (revoked), for the
-- record, so `account_id` has no foreign key; `account` is the name when the key was made.
CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    account_id    BIGINT,
    account       TEXT NOT NULL,
    secret_sha256 BYTEA NOT NULL CHECK (octet_length(secret_sha256) = 32),
    created_us    BIGINT NOT NULL,
    expires_us    BIGINT,
    revoked_us    BIGINT,
    last_used_us  BIGINT
);
CREATE INDEX api_keys_by_account_id ON api_keys (account_id);

-- One counter that every change a server must see moves: nodes poll it (one cheap read) and
-- reload their keys when it moved. A counter row updated by triggers, not a sequence: the row
-- changes inside the writing transaction, so a node that reads the new number also sees the
-- change; a sequence moves at nextval(), before the commit, and a node reloading in between
-- would read the old keys, then never see the number move again (a revoked key accepted on).
-- The row lock serialises account and key changes across the cluster, which are rare.
-- `last_used_us` updates do not move it.
CREATE TABLE accounts_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO accounts_version (id, version) VALUES (1, 0);

CREATE FUNCTION accounts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_changed
AFTER INSERT OR DELETE OR UPDATE OF role, max_stored_bytes, max_uploads, max_requests_per_second
ON accounts FOR EACH ROW EXECUTE FUNCTION accounts_changed();
CREATE TRIGGER api_keys_changed
AFTER INSERT OR DELETE OR UPDATE OF revoked_us, expires_us
ON api_keys FOR EACH ROW EXECUTE FUNCTION accounts_changed();
