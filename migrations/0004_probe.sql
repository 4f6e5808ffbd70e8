-- One row that `/readyz` rewrites (at most once a second) to prove the database takes durable
-- writes, not just reads: a full disk fails this write while reads still work.
CREATE TABLE write_probe (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    at_us    INTEGER NOT NULL
) STRICT;
