#!/usr/bin/env python3
"""bench/idle_clients.py PORT N HOLD: N keep-alive connections to 127.0.0.1:PORT, opened 100 at
a time, each sending one `GET /api/users` and reading its answer's head, then held open, idle,
for HOLD seconds and closed. Prints `open N` once all are open and `closed` at the end (the
scripts read RSS between the two). Used by bench/soak.sh (the burst) and bench/idle.sh."""
import asyncio
import sys

port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])


async def one():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /api/users HTTP/1.1\r\nHost: idle\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"not a 200: {head[:40]!r}")
    return w


async def main():
    writers = []
    for i in range(0, n, 100):
        writers += await asyncio.gather(*(one() for _ in range(min(100, n - i))))
    print("open", len(writers), flush=True)
    await asyncio.sleep(hold)
    for w in writers:
        w.close()
    print("closed", flush=True)


asyncio.run(main())
