#!/usr/bin/env python3
"""Benchmark (not a test): what the webhook outbox adds to one job insert in SQLite, counted in
instructions (valgrind's callgrind: repeatable whatever else the machine does), so the cost
of the triggers in migrations/0010_webhooks.sql can be compared with the insert itself.

Builds the schema from migrations/*.sql (Python's own sqlite3, WAL, foreign keys on as sqlx
sets them) and inserts N metadata-only jobs in transactions of 64, for each variant:
  none        no endpoint: the triggers' WHEN clause finds none
  event_only  one endpoint; a trigger that records only the event row
  full        one endpoint subscribed to every event: the migrations' triggers (event + delivery)
and prints instructions per job beyond the empty-schema baseline, and each variant's ratio to
`none`. Usage: scripts/bench_outbox.py [jobs, default 3000]   (needs valgrind)
"""
import glob, os, subprocess, sys, tempfile, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENT_ONLY_TRIGGER = """
DROP TRIGGER jobs_webhook_created;
CREATE TRIGGER jobs_webhook_created AFTER INSERT ON jobs
WHEN EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.enabled = 1) BEGIN
    INSERT OR IGNORE INTO webhook_events (type, job_id, occurred_us, owner_id, owner, state,
        progress, bytes_done, bytes_total, filename, size, sha256, content_type, metadata,
        error, created_us, updated_us)
    VALUES ('job.created', NEW.id, NEW.updated_us, NEW.owner_id, NEW.owner, NEW.state,
        NEW.progress, NEW.bytes_done, NEW.bytes_total, NEW.filename, NEW.size, NEW.sha256,
        NEW.content_type, NEW.metadata, NEW.error, NEW.created_us, NEW.updated_us);
END;"""


def insert_jobs(variant, count):
    """The measured program: one fresh database, `count` job inserts."""
    import sqlite3
    path = os.path.join(tempfile.mkdtemp(prefix="bench-outbox-"), "ingest.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    for migration in sorted(glob.glob(os.path.join(ROOT, "migrations", "*.sql"))):
        db.executescript(open(migration).read())
    if variant != "none":
        db.execute("INSERT INTO webhook_endpoints (id, account_id, url, events, secret, "
                   "created_us, updated_us) VALUES ('e1', 0, 'https://example.com/', '*', "
                   "'whsec_x', 1, 1)")
    if variant == "event_only":
        db.executescript(EVENT_ONLY_TRIGGER)
    for start in range(0, count, 64):
        db.execute("BEGIN")
        for _ in range(min(64, count - start)):
            # Time-ordered like the server's UUIDv7s, so indexes grow at their end.
            job_id = "%016x-%s" % (time.time_ns(), uuid.uuid4().hex[:12])
            now = time.time_ns() // 1000
            db.execute("INSERT INTO jobs (id, owner_id, owner, state, metadata, created_us, "
                       "updated_us) VALUES (?, 0, 'admin', 'queued', '{\"test\":\"data\"}', ?, ?)",
                       (job_id, now, now))
        db.execute("COMMIT")


def instructions(variant, count):
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg",
             sys.executable, os.path.abspath(__file__), "--run", variant, str(count)],
            capture_output=True, text=True, check=True)
    for line in result.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1].strip())
    raise SystemExit(f"no count from callgrind:\n{result.stderr}")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--run":
        insert_jobs(sys.argv[2], int(sys.argv[3]))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    baseline = instructions("none", 0)
    per_job = {v: (instructions(v, count) - baseline) / count
               for v in ("none", "event_only", "full")}
    print(f"== instructions per job insert, {count} jobs (callgrind; Python's sqlite3 "
          f"{__import__('sqlite3').sqlite_version})")
    for variant, cost in per_job.items():
        print(f"{variant:>10}: {cost:10,.0f}   ({cost / per_job['none']:.2f} of no endpoint)")


if __name__ == "__main__":
    main()
