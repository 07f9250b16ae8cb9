"""The one per-process TTL cache of hot-path lookups: tenant rows, verified API keys, a pack's PII
rules, pack versions. Each entry expires `ttl` seconds after it was stored, so a change made elsewhere
(a tenant's limits, a revoked key) takes effect within that time on every process.

cachetools.TTLCache under a lock: the tool agent's workers and the embedded platform run threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

V = TypeVar("V")
_MISSING = object()


class TTLCache(Generic[V]):
    def __init__(self, *, ttl: float, maxsize: int = 10_000):
        self._entries: cachetools.TTLCache = cachetools.TTLCache(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()

    def get_or_load(self, key: Hashable, load: Callable[[], V], *, keep_none: bool = True) -> V:
        """The cached value, or load() stored for next time (a None result only if keep_none)."""
        with self._lock:
            value = self._entries.get(key, _MISSING)
        if value is _MISSING:
            value = load()
            if value is not None or keep_none:
                with self._lock:
                    self._entries[key] = value
        return value

    def forget(self, key: Hashable = _MISSING) -> None:
        """Drop one entry, or every entry."""
        with self._lock:
            if key is _MISSING:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
