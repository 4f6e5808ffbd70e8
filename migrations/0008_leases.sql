-- Leases: which node (a random id each process makes at start) holds a job, and until when
-- (microseconds since the Unix epoch). Claiming a job for processing sets them, and so does
-- admitting a one-shot upload; the holder renews them while it works. A job whose lease has
-- run out was left by a process that stopped: processing goes back to the queue, a one-shot
-- upload fails. Resumable uploads hold none: they wait for their client. SQLite serves one
-- process, so at start-up every lease of another node id is an earlier, dead process's.
ALTER TABLE jobs ADD COLUMN lease_node TEXT;
ALTER TABLE jobs ADD COLUMN lease_until_us INTEGER;

-- Periodic work (retention, upload expiry, session pruning) runs at most once per interval
-- across every process on this database: a run claims its task's row until the next is due.
CREATE TABLE periodic_tasks (
    task     TEXT PRIMARY KEY NOT NULL,
    holder   TEXT NOT NULL,
    until_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
