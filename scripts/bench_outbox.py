#!/usr/bin/env python3
"""Benchmark (not a test): what the webhook outbox adds to one job insert in SQLite, counted in
instructions (valgrind's callgrind: repeatable whatever else the machine does), so the cost
of the triggers on `jobs` can be compared with the insert itself.

Builds the schema from migrations/*.sql (Python's own sqlite3, WAL, foreign keys on as sqlx
sets them) and inserts N metadata-only jobs in transactions of 64, for each variant:
  none          no endpoint: the triggers' WHEN clause finds none
  event         one endpoint subscribed to every event: the migrations' triggers, which record
                the event only (the sender fans it out into deliveries later, migration 0012)
  delivery_too  the same endpoint with 0010's triggers, which also wrote the delivery row in
                the job's transaction (the design 0012 replaced)
and prints instructions per job beyond the empty-schema baseline, and each variant's ratio to
`none`. Usage: scripts/bench_outbox.py [jobs, default 3000]   (needs valgrind)
"""
import glob, os, subprocess, sys, tempfile, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def delivery_too_triggers():
    """0010's triggers, which made every delivery inside the job's write."""
    text = open(os.path.join(ROOT, "migrations", "0010_webhooks.sql")).read()
    triggers = text[text.index("CREATE TRIGGER jobs_webhook_created"):]
    return "DROP TRIGGER jobs_webhook_created;\nDROP TRIGGER jobs_webhook_finished;\n" + triggers


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
    if variant == "delivery_too":
        db.executescript(delivery_too_triggers())
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
               for v in ("none", "event", "delivery_too")}
    print(f"== instructions per job insert, {count} jobs (callgrind; Python's sqlite3 "
          f"{__import__('sqlite3').sqlite_version})")
    for variant, cost in per_job.items():
        print(f"{variant:>12}: {cost:10,.0f}   ({cost / per_job['none']:.2f} of no endpoint)")


if __name__ == "__main__":
    main()
