#!/usr/bin/env python3
"""bench/keepalive_client.py URL N CONNS: N GETs of URL (127.0.0.1 only) over CONNS keep-alive
connections, each connection sending its next request once the last answer is read. Exits 1
if any answer is not a 200. A fixed request count (wrk runs for a time) for the per-request
counts of run.sh: instructions under callgrind, syscalls under strace."""
import http.client
import sys
import threading
import urllib.parse

url, total, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
parts = urllib.parse.urlsplit(url)
assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
failed = []


def worker(n):
    c = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    for _ in range(n):
        c.request("GET", parts.path or "/")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failed.append(r.status)
    c.close()


share = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
threads = [threading.Thread(target=worker, args=(n,)) for n in share]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    sys.exit(f"{len(failed)} answers were not 200: {failed[:5]}")
