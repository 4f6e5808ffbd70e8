-- Leases: which node (a random id each process makes at start) holds a job, and until when
-- (microseconds since the Unix epoch, by the database's clock, so nodes' clocks need not
-- agree). Claiming a job for processing sets them, and so does admitting a one-shot upload;
-- the holder renews all of its leases in one statement while it works. A job whose lease has
-- run out was left by a node that stopped: processing is claimable again by any node, a
-- one-shot upload fails. Resumable uploads hold none: they wait for their client.
ALTER TABLE jobs ADD COLUMN lease_node TEXT;
ALTER TABLE jobs ADD COLUMN lease_until_us BIGINT;
-- A node's renewal finds its leases among the few jobs in flight.
CREATE INDEX jobs_leased_by_node ON jobs (lease_node)
    WHERE state IN ('receiving', 'processing');

-- Periodic work (retention, upload expiry, session pruning) runs at most once per interval
-- across the cluster: a run claims its task's row (one conditional upsert) until the next is
-- due; the holder may claim it again, anyone else only once it has run out.
CREATE TABLE periodic_tasks (
    task     TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_us BIGINT NOT NULL
);
