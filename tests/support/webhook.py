"""A local HTTP endpoint standing in for a tenant's webhook; it records every request it receives.

/ok answers 200; /slow-once sleeps past the client's timeout on the first attempt of each
Idempotency-Key, then answers 200; /fail always answers 500."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    def __init__(self, slow_seconds: float = 3.0):
        self.requests: list[dict] = []
        self.seen: Counter[tuple[str | None, str]] = Counter()
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                key = self.headers.get("Idempotency-Key")
                with hook.lock:
                    seen = hook.seen[(key, self.path)]
                    hook.seen[(key, self.path)] += 1
                    hook.requests.append(
                        {
                            "path": self.path,
                            "key": key,
                            "body": body,
                            "at": time.time(),
                            "host": self.headers.get("Host"),
                        }
                    )
                if self.path == "/fail":
                    return self._answer(500, {"error": "always failing"})
                if self.path == "/slow-once" and seen == 0:
                    time.sleep(hook.slow_seconds)
                return self._answer(200, {"ok": True, "key": key})

            def _answer(self, status, payload):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
