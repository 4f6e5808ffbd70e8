#!/usr/bin/env python3
"""Uploads a file over tus (POST /api/uploads, then PATCHes of CHUNK bytes) and waits until the
job is completed; prints the job id and MB/s end to end. Used by scripts/bench.

Usage: bench_tus.py BASE_URL TOKEN FILE CHUNK_BYTES [STOP_AFTER_BYTES [UPLOAD_URL]]
With STOP_AFTER_BYTES it stops once that many bytes are stored and prints the upload URL;
with UPLOAD_URL it continues that upload from the server's offset instead of creating one.
TUS_PEER_PATH=/files uploads to another tus server (the reference peer) at that path instead:
no job, so the time ends with the last PATCH's answer.
"""
import http.client
import json
import os
import sys
import time
import urllib.parse

base, token, path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
stop_after = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] != "-" else None
resume_url = sys.argv[6] if len(sys.argv) > 6 else None
size = os.path.getsize(path)
host = urllib.parse.urlparse(base).netloc
conn = http.client.HTTPConnection(host, blocksize=1 << 20)
peer_path = os.environ.get("TUS_PEER_PATH")
auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}


def request(method, url, body=None, headers=None):
    conn.request(method, url, body=body, headers={**auth, **(headers or {})})
    response = conn.getresponse()
    response.read()
    return response


start = time.monotonic()
if resume_url:
    url = resume_url
    offset = int(request("HEAD", url).getheader("Upload-Offset"))
else:
    created = request("POST", peer_path or "/api/uploads", headers={"Upload-Length": str(size)})
    assert created.status == 201, created.status
    url, offset = created.getheader("Location"), 0
with open(path, "rb") as file:
    while offset < size and (stop_after is None or offset < stop_after):
        length = min(chunk, size - offset)
        file.seek(offset)
        remaining = length

        def body():
            global remaining
            while remaining > 0:
                block = file.read(min(1 << 20, remaining))
                remaining -= len(block)
                yield block

        response = request(
            "PATCH",
            url,
            body=body(),
            headers={
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
                "Content-Length": str(length),
            },
        )
        assert response.status == 204, response.status
        offset = int(response.getheader("Upload-Offset"))
if offset < size:
    print(url)
    sys.exit(0)
job = url.rsplit("/", 1)[1]
while not peer_path:
    conn.request("GET", f"/api/status/{job}", headers=auth)
    status = json.loads(conn.getresponse().read())["status"]
    if status == "completed":
        break
    assert status in ("queued", "processing"), status
    time.sleep(0.005)
elapsed = time.monotonic() - start
print(f"{job} {size / 1e6 / elapsed:.0f}")
