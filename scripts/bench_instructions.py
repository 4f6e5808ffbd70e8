#!/usr/bin/env python3
"""Benchmark (not a test): where a durable metadata-only ingest's work goes, counted in
instructions (valgrind's callgrind: repeatable whatever else the machine does, unlike the
requests per second of bench_scale (h) on a shared two-core machine).

Runs the release server and the bare-axum HTTP ceiling (examples/http_ceiling.rs) under
callgrind, sends each N/2 `POST /api/ingest` to warm up, then counts while it sends N more over
16 keep-alive connections and (the server) processes every job to `completed`, and prints instructions per request for
both, their ratio, and the server's instructions per job in the parts that matter (inclusive:
a part's callees count in it). Callgrind runs one thread at a time, so writes group into
smaller batches than at full speed: per-batch costs weigh more here than in (h).
Usage: scripts/bench_instructions.py [requests, default 4000]   (needs valgrind)
       scripts/bench_instructions.py --reads [requests, default 2000]
--reads counts the two reads of issue 15's goal 3 instead, on a database seeded with 100
finished jobs (scripts/bench_seed.py, as bench_scale (k)): the first page of `GET /api/jobs`
(50 jobs) and `GET /api/status/{id}`, each beside the ceiling's request, by part.
INGEST_BENCH_BINARY / INGEST_BENCH_EXAMPLES as for bench_scale (default target/release).
"""
import http.client, json, os, re, shutil, socket, sqlite3, subprocess, sys, tempfile
import threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("INGEST_BENCH_BINARY", os.path.join(ROOT, "target/release/ingest"))
EXAMPLES = os.environ.get("INGEST_BENCH_EXAMPLES", os.path.join(ROOT, "target/release/examples"))
TOKEN = "bench-instructions-token-0123456789"
CONNECTIONS = 16
BODY = json.dumps({"metadata": json.dumps({"test": "data"})})

# Functions whose inclusive counts are parts of both an ingest's work and a read's.
SQLITE_STATEMENTS = r"sqlx_sqlite::connection::execute::ExecuteIter as core::iter::traits::iterator::Iterator>::next"
HTTP_PATH = r"ingest::server::listener::PerConnection as tower_service::Service<http::request::Request<hyper::body::incoming::Incoming>>>::call::\{\{closure\}\} "
MALLOC = r":malloc \["

# Parts of the server's work, by the function that holds them (inclusive counts).
PARTS = [
    ("SQLite statements (sqlx's thread)", SQLITE_STATEMENTS),
    ("  of which preparing statements", r"\?\?\?:sqlite3_prepare_v3 "),
    ("  of which temporary b-trees (RETURNING, IN lists, sorts)", r"\?\?\?:sqlite3BtreeOpen "),
    ("  of which b-tree inserts", r"\?\?\?:sqlite3BtreeInsert "),
    ("HTTP: hyper, middleware, routing, handler", HTTP_PATH),
    ("  of which the ingest handler", r"<F as axum::handler::Handler<\(M,T1,T2,T3\),S>>::call::\{\{closure\}\} "),
    ("the writer task (batches, statements' arguments)", r"ingest::server::store::sqlite::write_loop::\{\{closure\}\} "),
    ("live status (hub publish)", r"ingest::server::hub::StatusHub as ingest::server::hub::LiveStatus>::publish "),
    ("malloc (glibc's; Rust's and SQLite's allocations, not frees)", MALLOC),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(port, path, limit=180):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"nothing answered on port {port}")


def send(port, count, method, path, body=None, expected=200):
    """`count` requests over CONNECTIONS keep-alive connections; every answer must be `expected`.
    Returns how many were sent (a multiple of CONNECTIONS)."""
    headers = {"Authorization": "Bearer " + TOKEN}
    if body is not None:
        headers["Content-Type"] = "application/json"
    failures = []

    def one_connection(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for _ in range(n):
            c.request(method, path, body, headers)
            response = c.getresponse()
            response.read()
            if response.status != expected:
                failures.append(response.status)

    threads = [threading.Thread(target=one_connection, args=(count // CONNECTIONS,))
               for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"{len(failures)} answers to {method} {path} were not {expected}, e.g. {failures[0]}")
    return count // CONNECTIONS * CONNECTIONS


def load(port, count):
    """`count` metadata-only ingests; every answer must be 202."""
    return send(port, count, "POST", "/api/ingest", BODY, 202)


def callgrind(command, env, port, ready_path, workdir, name, windows):
    """Runs `command` under callgrind and counts each of `windows` apart. A window is a pair
    of calls, (warm_up, measured): the counters are zeroed after the first (statements
    prepared once, buffers grown) and dumped after the second. Returns the dumps, in order."""
    out = os.path.join(workdir, f"{name}.callgrind")
    program = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + command,
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"{name}.log"), "w"))
    control = lambda *args: subprocess.run(
        ["callgrind_control", *args, str(program.pid)], check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(port, ready_path)
        for n, (warm_up, measured) in enumerate(windows):
            warm_up()
            control("-z")
            measured()
            control("-d", f"window{n}")
    finally:
        program.terminate()
        program.wait()
    dumps = [f for f in os.listdir(workdir) if f.startswith(f"{name}.callgrind.")]
    dumps.sort(key=lambda f: int(f.rsplit(".", 1)[1]))
    return [os.path.join(workdir, f) for f in dumps[:len(windows)]]


def total(dump):
    for line in open(dump):
        if line.startswith("summary:"):
            return int(line.split()[1])
    sys.exit(f"no summary in {dump}")


def inclusive(dump):
    text = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--inclusive=yes", "--threshold=100", dump],
        check=True, capture_output=True, text=True).stdout
    return text.splitlines()


def server_env(workdir, port):
    data = os.path.join(workdir, "data")
    config = os.path.join(workdir, "none.toml")
    open(config, "w").close()
    env = dict(os.environ, INGEST_RATE_LIMIT_PER_SECOND="0", INGEST_TOKEN=TOKEN,
               INGEST_DATA_DIR=data, LEPTOS_SITE_ADDR=f"127.0.0.1:{port}",
               INGEST_CONFIG=config, RUST_LOG="warn")
    return data, env


def print_parts(dump, count, parts):
    lines = inclusive(dump)
    for label, pattern in parts:
        found = [l for l in lines if re.search(pattern, l)]
        if not found:
            print(f"  {label}: not found in the profile")
            continue
        ir = int(found[0].split()[0].replace(",", ""))
        print(f"  {label:<58} {ir / count:>10,.0f}  ({100 * ir / total(dump):.1f}%)")


# Parts of a read's work (inclusive).
READ_PARTS = [
    ("SQLite statements (sqlx's thread)", SQLITE_STATEMENTS),
    ("  of which each row's values copied (sqlx: sqlite3_value_dup)", r"sqlx_sqlite::row::SqliteRow::current "),
    ("rows freed (sqlx: sqlite3_value_free)", r"core::ptr::drop_in_place<sqlx_sqlite::row::SqliteRow> "),
    ("rows read into JobRow (FromRow)", r"JobRow as sqlx_core::from_row::FromRow"),
    ("JobRow parsed into JobStatus (id, metadata JSON, times)", r"TryFrom<ingest::server::store::sqlite::JobRow> for ingest::domain::job::JobStatus>::try_from "),
    ("the answer serialized (axum's Json)", r"<axum::json::Json<T> as axum_core::response::into_response::IntoResponse>::into_response "),
    ("HTTP: hyper, middleware, routing, handler (rows read and answer included)", HTTP_PATH),
    ("malloc", MALLOC),
]


def reads(count, workdir, ceiling_per):
    """Instructions per first page of GET /api/jobs and per GET /api/status/{id}."""
    port = free_port()
    data, env = server_env(workdir, port)
    # Started once to migrate, then seeded as bench_scale (k) does.
    migrating = subprocess.Popen([BINARY], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    wait_until_up(port, "/readyz")
    migrating.terminate()
    migrating.wait()
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts/bench_seed.py"),
                    os.path.join(data, "ingest.db"), "100"], check=True)
    db = sqlite3.connect(os.path.join(data, "ingest.db"))
    job_id = db.execute("select id from jobs order by seq desc limit 1").fetchone()[0]
    db.close()
    paths = [("first page of GET /api/jobs (50 jobs)", "/api/jobs"),
             ("GET /api/status/{id}", f"/api/status/{job_id}")]
    windows = [(lambda path=path: send(port, count // 2, "GET", path),
                lambda path=path: send(port, count, "GET", path)) for _, path in paths]
    dumps = callgrind([BINARY], env, port, "/readyz", workdir, "reads", windows)
    for (label, _), dump in zip(paths, dumps):
        per = total(dump) / count
        print(f"{count} x {label}, instructions per request: {per:>10,.0f}"
              f"   ({per / ceiling_per:.1f}x the ceiling's request)")
        print_parts(dump, count, READ_PARTS)


def main():
    read_mode = "--reads" in sys.argv[1:]
    numbers = [a for a in sys.argv[1:] if a != "--reads"]
    count = int(numbers[0]) if numbers else (2000 if read_mode else 4000)
    count -= count % CONNECTIONS
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    workdir = tempfile.mkdtemp(prefix="ingest-instructions-")

    port = free_port()
    [ceiling] = callgrind([os.path.join(EXAMPLES, "http_ceiling"), f"127.0.0.1:{port}"],
                          dict(os.environ), port, "/", workdir, "ceiling",
                          [(lambda: load(port, count // 2), lambda: load(port, count))])
    if read_mode:
        ceiling_per = total(ceiling) / count
        print(f"HTTP ceiling (bare axum POST, stores nothing): {ceiling_per:,.0f} instructions per request")
        reads(count, workdir, ceiling_per)
        print(f"(profiles kept in {workdir}; callgrind_annotate --inclusive=yes shows the rest)")
        return

    port = free_port()
    data, env = server_env(workdir, port)

    def all_completed(count):
        deadline = time.time() + 600
        while time.time() < deadline:
            db = sqlite3.connect(os.path.join(data, "ingest.db"))
            done = db.execute("select count(*) from jobs where state = 'completed'").fetchone()[0]
            db.close()
            if done >= count:
                return
            time.sleep(1)
        sys.exit("the jobs were not all processed within 10 minutes")

    # Each window ends once every job sent so far is processed: processing is counted too.
    sent = []

    def ingests(n):
        sent.append(load(port, n))
        all_completed(sum(sent))

    [server] = callgrind([BINARY], env, port, "/readyz", workdir, "ingest",
                         [(lambda: ingests(count // 2), lambda: ingests(count))])

    ceiling_per = total(ceiling) / count
    server_per = total(server) / count
    print(f"{count} metadata-only ingests over {CONNECTIONS} connections, instructions per request:")
    print(f"  HTTP ceiling (bare axum, stores nothing): {ceiling_per:>10,.0f}")
    print(f"  Ingest, received and processed:           {server_per:>10,.0f}"
          f"   (ratio {ceiling_per / server_per:.3f})")
    print_parts(server, count, PARTS)
    print(f"(profiles kept in {workdir}; callgrind_annotate --inclusive=yes shows the rest)")


if __name__ == "__main__":
    main()
