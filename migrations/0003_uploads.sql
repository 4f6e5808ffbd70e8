-- Resumable (tus) uploads: how many bytes of each are durable in its temp file. A receiving job
-- with a row here survives a restart and can be continued; one without (a one-shot upload,
-- whose client is gone with the connection) is marked failed.
CREATE TABLE uploads (
    job_id         TEXT PRIMARY KEY NOT NULL,
    durable_offset INTEGER NOT NULL,
    -- The whole file's SHA-256 as the client declared it (Upload-Metadata `sha256`), if it did.
    expected_sha256 TEXT
) STRICT, WITHOUT ROWID;
