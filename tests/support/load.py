"""HTTP ingest at a fixed rate, as a well-behaved source system sends it: every exception carries an
Idempotency-Key and is sent again with the same key until the API accepts it (202, or 200 for a
duplicate): after a 503 (waiting its Retry-After, capped), a 429, or a connection cut (a gunicorn worker
killed mid-request). So "accepted" is exactly-once whatever the API went through, and every answer is
counted by status. Used by the fault tests (tests/e2e/test_faults.py) and bench/soak.py."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.support.scenarios import settlement

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise


@dataclass
class Accepted:
    key: str
    exception_id: str
    first_sent: float  # time.time()
    accepted_at: float
    attempts: int


@dataclass
class LoadReport:
    accepted: dict[str, Accepted] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    given_up: int = 0
    successes: list[float] = field(default_factory=list)  # time.time() of each 2xx answer

    def server_errors(self) -> dict[int, int]:
        return {code: n for code, n in self.statuses.items() if code >= 500}

    def undocumented_5xx(self) -> dict[int, int]:
        """5xx other than the documented 503 (an outage of a dependency, with Retry-After)."""
        return {code: n for code, n in self.server_errors().items() if code != 503}

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time between start and end without any accepted request."""
        points = sorted([start, *(t for t in self.successes if start <= t <= end), end])
        return max(b - a for a, b in zip(points, points[1:], strict=False))


class IngestLoad:
    def __init__(self, base_url: str, tenant: str, key: str, *, rate: float, threads: int = 6, amount=5_000.0):
        self.url = f"{base_url}/api/exceptions/{tenant}"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.rate = rate
        self.threads = threads
        self.amount = amount
        self.report = LoadReport()
        self._lock = threading.Lock()
        self._todo: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._stop = threading.Event()
        self._give_up_at = float("inf")
        self._workers: list[threading.Thread] = []
        self._pacer: threading.Thread | None = None

    def start(self) -> IngestLoad:
        self._pacer = threading.Thread(target=self._pace, daemon=True)
        self._pacer.start()
        for _ in range(self.threads):
            thread = threading.Thread(target=self._work, daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def _pace(self) -> None:
        interval, due = 1.0 / self.rate, time.monotonic()
        while not self._stop.is_set():
            self._todo.put((uuid.uuid4().hex, time.time()))
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))

    def _work(self) -> None:
        client = httpx.Client(headers=self.headers, timeout=15)
        while True:
            item = self._todo.get()
            if item is None:
                return
            self._send(client, *item)

    def _send(self, client: httpx.Client, key: str, first_sent: float) -> None:
        body = {
            "source_system": "fault-test",
            "exception_type": "SETTLEMENT_FAILURE",
            "payload": settlement(self.amount),
        }
        attempts = 0
        while time.monotonic() < self._give_up_at:
            attempts += 1
            try:
                response = client.post(self.url, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                with self._lock:
                    self.report.errors[type(exc).__name__] += 1
                time.sleep(0.2)
                continue
            with self._lock:
                self.report.statuses[response.status_code] += 1
            if response.status_code in (200, 202):
                now = time.time()
                with self._lock:
                    self.report.successes.append(now)
                    self.report.accepted[key] = Accepted(
                        key, response.json()["exception_id"], first_sent, now, attempts
                    )
                return
            if response.status_code in (429, 503) or response.status_code >= 500:
                time.sleep(min(2.0, float(response.headers.get("Retry-After", "1") or 1)))
                continue
            raise AssertionError(f"ingest answered {response.status_code}: {response.text[:500]}")
        with self._lock:
            self.report.given_up += 1

    def stop(self, grace: float = 60.0) -> LoadReport:
        """Stop sending new exceptions; those already being sent get `grace` seconds to be accepted."""
        self._stop.set()
        if self._pacer is not None:
            self._pacer.join()
        self._give_up_at = time.monotonic() + grace
        for _ in self._workers:
            self._todo.put(None)
        for thread in self._workers:
            thread.join(timeout=grace + 20)
        return self.report

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.report.accepted)
