-- The jobs table is both the record of every job and the persistent work queue.
CREATE TABLE jobs (
    -- Insertion order (the rowid): new rows append at the end of the table.
    seq          INTEGER PRIMARY KEY NOT NULL,
    -- UUIDv7, time-ordered, so the index on it also grows at its end.
    id           TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'receiving', 'processing', 'completed', 'failed', 'cancelled')),
    progress     INTEGER NOT NULL DEFAULT 0,
    bytes_done   INTEGER NOT NULL DEFAULT 0,
    bytes_total  INTEGER,
    filename     TEXT,
    size         INTEGER,
    sha256       TEXT,
    content_type TEXT,
    metadata     TEXT NOT NULL,
    error        TEXT,
    -- Microseconds since the Unix epoch: sorts correctly and round-trips exactly.
    created_us   INTEGER NOT NULL,
    updated_us   INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_sha256 ON jobs (sha256) WHERE sha256 IS NOT NULL;
