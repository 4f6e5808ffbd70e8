-- Jobs belong to accounts, by number: a name can be removed and taken again, a number never is
-- (AUTOINCREMENT never reuses one), so a re-created name starts with none of the old account's
-- jobs or keys. Number 0 is the built-in `admin` of INGEST_TOKEN, which is not stored here.
-- Each account may also carry its own quotas (NULL: the server's default; 0: no limit).
CREATE TABLE accounts_numbered (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    name                    TEXT NOT NULL UNIQUE COLLATE NOCASE,
    role                    TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_us              INTEGER NOT NULL,
    max_stored_bytes        INTEGER CHECK (max_stored_bytes >= 0),
    max_uploads             INTEGER CHECK (max_uploads >= 0),
    max_requests_per_second INTEGER CHECK (max_requests_per_second >= 0)
) STRICT;
INSERT INTO accounts_numbered (name, role, created_us)
SELECT name, role, created_us FROM accounts ORDER BY created_us, name;
DROP TABLE accounts;
ALTER TABLE accounts_numbered RENAME TO accounts;

-- The triggers went with the old table; the quota columns move the version too, so every
-- server picks up a changed quota within a second.
CREATE TRIGGER accounts_inserted AFTER INSERT ON accounts
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts
BEGIN UPDATE accounts_version SET version = version + 1; END;
CREATE TRIGGER accounts_updated
AFTER UPDATE OF role, max_stored_bytes, max_uploads, max_requests_per_second ON accounts
BEGIN UPDATE accounts_version SET version = version + 1; END;

-- A key belongs to an account by number; the name stays beside it for the record. Keys of
-- accounts removed before this migration (all revoked) belong to none, including those of an
-- earlier account whose name was taken again: a key older than its name's account is not its.
ALTER TABLE api_keys ADD COLUMN account_id INTEGER;
UPDATE api_keys SET account_id = (
    SELECT id FROM accounts
    WHERE accounts.name = api_keys.account AND accounts.created_us <= api_keys.created_us
);
CREATE INDEX api_keys_by_account_id ON api_keys (account_id);

-- `owner` is the name at creation, shown beside the job; isolation compares `owner_id`. Jobs
-- from before did not record who made them, so they go to the built-in admin, except the
-- resumable uploads, whose credential was recorded (`key:<id>`): those go to the key's
-- account, so a member's unfinished upload can still be continued by it.
ALTER TABLE jobs ADD COLUMN owner_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin';
UPDATE jobs
SET owner_id = (
        SELECT api_keys.account_id FROM uploads JOIN api_keys
        ON uploads.owner = 'key:' || api_keys.key_id
        WHERE uploads.job_id = jobs.id),
    owner = (
        SELECT accounts.name FROM uploads JOIN api_keys
        ON uploads.owner = 'key:' || api_keys.key_id
        JOIN accounts ON accounts.id = api_keys.account_id
        WHERE uploads.job_id = jobs.id)
WHERE id IN (
    SELECT uploads.job_id FROM uploads JOIN api_keys
    ON uploads.owner = 'key:' || api_keys.key_id
    JOIN accounts ON accounts.id = api_keys.account_id
);
-- An account's jobs, newest first (its list), and the bytes its files take (its storage usage,
-- summed from the index alone).
CREATE INDEX jobs_by_owner ON jobs (owner_id, seq);
CREATE INDEX jobs_stored_by_owner ON jobs (owner_id, size) WHERE sha256 IS NOT NULL;
-- An admin filters the list by the name shown.
CREATE INDEX jobs_by_owner_name ON jobs (owner COLLATE NOCASE, seq);
