-- Accounts and their API keys. A key is stored as the SHA-256 of its secret, never the secret.
-- The built-in `admin` account of INGEST_TOKEN lives in the settings, not here.
-- Names are compared without case: `alice` and `Alice` are one account.
CREATE TABLE accounts (
    name       TEXT PRIMARY KEY NOT NULL COLLATE NOCASE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_us INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY NOT NULL,
    account       TEXT NOT NULL COLLATE NOCASE,
    secret_sha256 TEXT NOT NULL,
    created_us    INTEGER NOT NULL,
    expires_us    INTEGER,
    revoked_us    INTEGER,
    last_used_us  INTEGER
) STRICT;
CREATE INDEX api_keys_by_account ON api_keys (account);

-- One counter that every change a server must see moves: servers poll it (one cheap read) and
-- reload their keys when it moved, so a key added or revoked by the CLI in another process
-- counts within about a second. `last_used_us` updates do not move it.
CREATE TABLE accounts_version (
    only    INTEGER PRIMARY KEY CHECK (only = 1),
    version INTEGER NOT NULL
) STRICT;
INSERT INTO accounts_version (only, version) VALUES (1, 0);

CREATE TRIGGER accounts_inserted AFTER INSERT ON accounts
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER accounts_updated AFTER UPDATE OF role ON accounts
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_us, expires_us ON api_keys
BEGIN UPDATE accounts_version SET version = version + 1; END;

-- Which key opened each browser session (NULL: INGEST_TOKEN), so revoking a key ends them.
ALTER TABLE sessions ADD COLUMN key_id TEXT;
CREATE INDEX sessions_by_key ON sessions (key_id);
