#!/usr/bin/env python
"""An HTTP tool server for benchmarks: answers every request after a fixed delay (an I/O-bound tool).

One asyncio process, so thousands of calls can wait at once for next to no CPU: the delay is the
tool's, not the server's. `POST <any path>` sleeps --delay seconds and answers 200 with a small JSON
body; `GET /stats` answers what it has seen: requests, distinct `Idempotency-Key`s (a key seen twice
is a second attempt of one execution), the most requests in flight at once, requests per path and
per client address.

    python bench/toolserver.py --host 127.0.0.1 --port 8765 --delay 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter


class ToolServer:
    def __init__(self, delay: float):
        self.delay = delay
        self.requests = 0
        self.keys: set[str] = set()
        self.paths: Counter[str] = Counter()
        self.clients: Counter[str] = Counter()  # requests per client address
        self.in_flight = 0
        self.max_in_flight = 0

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "idempotency_keys": len(self.keys),
            "max_in_flight": self.max_in_flight,
            "paths": dict(self.paths),
            "clients": dict(self.clients),
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = (writer.get_extra_info("peername") or ("?",))[0]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                if method == "GET" and path == "/stats":
                    body = json.dumps(self.stats()).encode()
                else:
                    self.requests += 1
                    self.paths[path] += 1
                    self.clients[client] += 1
                    if "idempotency-key" in headers:
                        self.keys.add(headers["idempotency-key"])
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        await asyncio.sleep(self.delay)
                    finally:
                        self.in_flight -= 1
                    body = b'{"ok": true}'
                close = headers.get("connection", "").lower() == "close"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(body), b"Connection: close\r\n" if close else b"", body)
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def serve(host: str, port: int, delay: float) -> None:
    tool = ToolServer(delay)
    server = await asyncio.start_server(tool.handle, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each answer takes (default 0.05)")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.delay))


if __name__ == "__main__":
    main()
