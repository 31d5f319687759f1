#!/usr/bin/env python3
"""bench/slow_backend.py: a deliberately slow HTTP/1.1 backend for bench/mirror.sh.

Answers every request with `200 ok\\n`, DELAY_MS after the request's head (and body, if it
has a Content-Length) has arrived. Keep-alive by default (HTTP/1.1), pipelining-safe
(answers in order), many concurrent connections: one asyncio Protocol per connection and
one timer per request, no task or thread per request, so thousands of slow requests in
flight cost little.

Usage: python3 bench/slow_backend.py PORT [DELAY_MS=200] [HOST=127.0.0.1]
On SIGTERM/SIGINT it prints `slow_backend: served N requests, M connections` to stderr.
Only ever binds a loopback address (the benchmark sends traffic to 127.0.0.1 only).
"""

import asyncio
import signal
import sys
from collections import deque

BODY = b"ok\n"
MAX_HEAD = 64 * 1024

served = 0
connections = 0


def response(keep_alive, head_only):
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 3\r\n"
        + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
        + b"\r\n"
        + (b"" if head_only else BODY)
    )


class Slow(asyncio.Protocol):
    def __init__(self, loop, delay):
        self.loop = loop
        self.delay = delay
        self.buf = bytearray()
        self.need_body = 0  # body bytes of the current request still to skip
        self.pending = deque()  # responses not yet due, in request order
        self.closing = False  # a Connection: close request was seen; read no more
        self.transport = None

    def connection_made(self, transport):
        global connections
        connections += 1
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None
        self.pending.clear()

    def data_received(self, data):
        if self.closing:
            return
        self.buf += data
        while True:
            if self.need_body:
                n = min(self.need_body, len(self.buf))
                del self.buf[:n]
                self.need_body -= n
                if self.need_body:
                    return
                self.schedule(*self.current)
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.bad("request head too large")
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self.bad("bad request line")
                return
            method, version = parts[0], parts[2]
            length = 0
            conn = ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        self.bad("bad content-length")
                        return
                elif name == "transfer-encoding":
                    # Not needed for GET/HEAD mirrors; refuse rather than mis-frame.
                    self.bad("chunked bodies are not supported")
                    return
                elif name == "connection":
                    conn = value.strip().lower()
            if version == "HTTP/1.0":
                keep_alive = "keep-alive" in conn
            else:
                keep_alive = "close" not in conn
            self.current = (keep_alive, method == "HEAD")
            if length:
                self.need_body = length
                continue
            self.schedule(*self.current)
            if self.closing:
                return

    def schedule(self, keep_alive, head_only):
        self.pending.append(response(keep_alive, head_only))
        if not keep_alive:
            self.closing = True
        self.loop.call_later(self.delay, self.answer)

    def answer(self):
        # Every request waits the same delay and timers fire in order, so the head of the
        # queue is the one that is due.
        global served
        if self.transport is None or not self.pending:
            return
        data = self.pending.popleft()
        self.transport.write(data)
        served += 1
        if self.closing and not self.pending:
            self.transport.close()

    def bad(self, why):
        if self.transport is not None:
            msg = (why + "\n").encode()
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (len(msg), msg)
            )
            self.transport.close()
        self.closing = True


async def main():
    port = int(sys.argv[1])
    delay = (float(sys.argv[2]) if len(sys.argv) > 2 else 200.0) / 1000.0
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Slow(loop, delay), host, port, backlog=4096, reuse_address=True
    )
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop
    print(
        f"slow_backend: served {served} requests, {connections} connections",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    asyncio.run(main())
