"""CPU seconds per process, read from /proc: what the benchmarks' "CPU by component" figures add up.

Each benchmark says which processes are whose (the ones it started, PostgreSQL's, RabbitMQ's, the
Kafka broker's); this module only walks /proc once per snapshot and names the PostgreSQL processes
that belong to a database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    cpu_seconds: float  # user + system so far

    def is_postgres(self) -> bool:
        return self.comm == "postgres" or self.cmdline.startswith("postgres")

    def is_postgres_backend_of(self, db: str) -> bool:
        """A PostgreSQL backend connected to `db` (backends name their database in the process title)."""
        return self.is_postgres() and db in self.cmdline.split()

    def is_postgres_shared(self) -> bool:
        """One of PostgreSQL's shared background processes (WAL writer, checkpointer, ...): no backend,
        no autovacuum worker."""
        words = self.cmdline.split()
        backend = any(w.startswith(("127.0.0.1(", "[local]")) for w in words) or "autovacuum" in self.cmdline
        return self.is_postgres() and not backend


def processes() -> Iterator[Proc]:
    """Every process still there while /proc is read."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
        fields = stat.rsplit(")", 1)[1].split()
        yield Proc(int(entry.name), int(fields[1]), comm, cmdline, (int(fields[11]) + int(fields[12])) / tick)


def cpu_by_ancestor(roots: dict[int, str], procs: Iterator[Proc] | None = None) -> dict[str, float]:
    """CPU seconds so far per group: each process counts for the nearest of its ancestors (itself
    included) that `roots` names (pid -> group); processes under no root are left out."""
    table = {p.pid: p for p in (processes() if procs is None else procs)}
    totals: dict[str, float] = {}
    for proc in table.values():
        pid = proc.pid
        while pid in table and pid not in roots:
            pid = table[pid].ppid
        if pid in roots:
            totals[roots[pid]] = totals.get(roots[pid], 0.0) + proc.cpu_seconds
    return totals
