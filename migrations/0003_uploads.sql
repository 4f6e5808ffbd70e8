-- Resumable (tus) uploads: how many bytes of each are durable in its temp file. A receiving job
-- with a row here survives a restart and can be continued; one without (a one-shot upload,
-- whose client is gone with the connection) is marked failed.
CREATE TABLE uploads (
    job_id         TEXT PRIMARY KEY NOT NULL,
    durable_offset INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
