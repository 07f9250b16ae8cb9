"""Which dependencies a process reaches, and the bounded backoff its loops wait with.

Every long-running process (gunicorn workers, Celery workers, beat, the dead-letter consumer, the
event-stream relay) reports here. `down(...)` writes one WARNING line when a dependency becomes
unreachable and `up(...)` one line when it answers again (with how long it was gone), however many
attempts fail in between; both set `sentinai_dependency_up{dependency}` (1 or 0). With several
processes on a host (multiprocess mode) the scrape shows the lowest value over the live processes:
0 means at least one process cannot reach it now.

Dependencies: "database" (PostgreSQL), "broker" (RabbitMQ), "redis" (admission control, cache),
"kafka" (the event stream).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time

from prometheus_client import Gauge

logger = logging.getLogger("sentinai.dependencies")

DEPENDENCY_UP = Gauge(
    "sentinai_dependency_up",
    "1 while the processes reach the dependency, 0 during an outage (lowest over a host's live processes).",
    ["dependency"],
    multiprocess_mode="livemin",
)

_lock = threading.Lock()
_down_since: dict[str, float] = {}
_seen: set[str] = set()
# dependency -> a callable that raises unless the dependency answers now (see `probe_with`).
_probes: dict[str, object] = {}
_probing: set[str] = set()


def probe_with(dependency: str, probe) -> None:
    """Register how this process checks `dependency` by itself. After `down(dependency)`, a daemon
    thread calls `probe()` with backoff until it returns, then marks the dependency up: the gauge
    and the recovery line do not wait for the process's next piece of work to touch it (a worker
    whose one failed publish came after its consumer had already reconnected would otherwise show
    the broker down until its next publish, however long that is)."""
    _probes[dependency] = probe


def _watch(dependency: str) -> None:
    probe = _probes.get(dependency)
    with _lock:
        if probe is None or dependency in _probing:
            return
        _probing.add(dependency)

    def run() -> None:
        backoff = Backoff(base=0.5, cap=5.0)
        try:
            while dependency in _down_since:
                backoff.sleep(should_stop=lambda: dependency not in _down_since)
                if dependency not in _down_since:
                    return
                try:
                    probe()
                except Exception:  # still down: the outage line was written once, stay quiet
                    continue
                up(dependency)
        finally:
            with _lock:
                _probing.discard(dependency)

    threading.Thread(target=run, name=f"sentinai-probe-{dependency}", daemon=True).start()


def down(dependency: str, exc: BaseException | str, *, consequence: str = "") -> bool:
    """Note an outage. Logs only on the transition (returns True then)."""
    with _lock:
        if dependency in _down_since:
            return False
        _down_since[dependency] = time.monotonic()
        _seen.add(dependency)
    DEPENDENCY_UP.labels(dependency).set(0)
    _watch(dependency)
    reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else exc
    logger.warning(
        "dependency %s unreachable (%s)%s",
        dependency,
        str(reason).strip().replace("\n", " ")[:300],
        f"; {consequence}" if consequence else "",
        extra={"dependency": dependency, "dependency_state": "down"},
    )
    return True


def up(dependency: str) -> bool:
    """Note that the dependency answered. Cheap when nothing changed; logs the recovery (returns True)."""
    if dependency in _seen and dependency not in _down_since:
        return False
    with _lock:
        since = _down_since.pop(dependency, None)
        first = dependency not in _seen
        _seen.add(dependency)
    if since is None and not first:
        return False
    DEPENDENCY_UP.labels(dependency).set(1)
    if since is None:
        return False
    logger.warning(
        "dependency %s reachable again after %.1fs",
        dependency,
        time.monotonic() - since,
        extra={"dependency": dependency, "dependency_state": "up"},
    )
    return True


def _after_fork_in_child() -> None:
    """A forked child (a Celery prefork pool process) starts its own metric file, where every
    dependency the parent had reported would read 0: state what the parent knew, in the child's file."""
    _probing.clear()  # the parent's probe threads do not exist in the child
    for dependency in list(_seen):
        DEPENDENCY_UP.labels(dependency).set(0 if dependency in _down_since else 1)
        if dependency in _down_since:
            _watch(dependency)


os.register_at_fork(after_in_child=_after_fork_in_child)


def is_down(dependency: str) -> bool:
    return dependency in _down_since


def forget() -> None:
    """Tests: start from a process that has seen nothing."""
    with _lock:
        _down_since.clear()
        _seen.clear()


class Backoff:
    """Exponential backoff with jitter, bounded by `cap` seconds: 0.5, 1, 2, 4 ... cap."""

    def __init__(self, base: float = 0.5, factor: float = 2.0, cap: float = 15.0, jitter: float = 0.2):
        self.base, self.factor, self.cap, self.jitter = base, factor, cap, jitter
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * self.factor**self.attempt)
        self.attempt += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.attempt = 0

    def sleep(self, should_stop=lambda: False) -> None:
        """Wait the next delay, waking early when `should_stop()` turns true."""
        deadline = time.monotonic() + self.next()
        while not should_stop() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


def database_errors() -> tuple[type[BaseException], ...]:
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


def is_database_outage(exc: BaseException) -> bool:
    """A lost or refused connection (no SQLSTATE, class 08, or 57P: shutdown / starting up), as
    opposed to an error of one statement that the database did answer (a deadlock, a timeout)."""
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a lost or refused broker connection raises through kombu/py-amqp."""
    import amqp.exceptions
    from kombu.exceptions import OperationalError as KombuOperationalError

    return (
        KombuOperationalError,
        amqp.exceptions.RecoverableConnectionError,
        amqp.exceptions.ConnectionError,
        ConnectionError,
        OSError,
    )


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, OSError)
