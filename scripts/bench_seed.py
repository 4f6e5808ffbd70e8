#!/usr/bin/env python3
"""Seeds an Ingest SQLite database (already migrated: start and stop the server once) with
finished jobs straight into the table, not through HTTP, for the scale figures of scripts/bench.

Usage: bench_seed.py DB RECENT [EXPIRED_DAYS_AGO:COUNT]
RECENT jobs finished within the last hour (mostly completed; every 10th failed, every 50th
cancelled, with metadata and a filename); then COUNT more finished EXPIRED_DAYS_AGO days ago,
which a retention sweep deletes. Ids are UUIDv7 in insertion order, as the server makes them.
"""
import os
import sqlite3
import sys
import time

db, recent = sys.argv[1], int(sys.argv[2])
expired_days, expired = (int(x) for x in sys.argv[3].split(":")) if len(sys.argv) > 3 else (0, 0)


def uuid7(ms):
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1)
    value = value & ~(0b11 << 62) | (0b10 << 62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rows(count, finished_us, start_seq):
    for i in range(count):
        state = "cancelled" if i % 50 == 0 else "failed" if i % 10 == 0 else "completed"
        at = finished_us - (count - i) * 1000
        yield (
            start_seq + i, uuid7(at // 1000), state, 100 if state == "completed" else 0, 0, None,
            f"seeded-{i}.txt", None, None, None, '{"seeded":true,"n":%d}' % i,
            "seeded failure" if state == "failed" else None, at, at, 0, "admin",
        )


conn = sqlite3.connect(db)
conn.execute("PRAGMA journal_mode = WAL")
seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
now_us = int(time.time() * 1e6)
insert = ("INSERT INTO jobs (seq, id, state, progress, bytes_done, bytes_total, filename, size, "
          "sha256, content_type, metadata, error, created_us, updated_us, owner_id, owner) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
started = time.time()
with conn:
    # Expired jobs are older, so they come first in insertion order.
    conn.executemany(insert, rows(expired, now_us - expired_days * 86400 * 1_000_000, seq))
    conn.executemany(insert, rows(recent, now_us - 3_600_000_000 + recent * 1000, seq + expired))
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
total = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
print(f"seeded {recent} recent and {expired} expired jobs in {time.time() - started:.1f} s; {total} jobs in all")
