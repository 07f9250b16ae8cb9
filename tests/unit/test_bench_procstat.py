"""bench/procstat.py, which the benchmarks' CPU-by-component figures add up: this process is found with
its parent and the CPU it has used, and a busy loop shows up in the next snapshot."""

import os
import time

from bench.procstat import Proc, processes


def _me() -> Proc:
    (me,) = [p for p in processes() if p.pid == os.getpid()]
    return me


def test_this_process_is_read_with_its_parent_and_its_cpu():
    before = _me()
    assert before.ppid == os.getppid() and "python" in before.cmdline
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn 0.3 s of CPU
        pass
    assert _me().cpu_seconds - before.cpu_seconds >= 0.2


def test_postgres_processes_are_told_apart_by_database():
    backend = Proc(1, 0, "postgres", "postgres: 15/main: sentinai_app bench_db 127.0.0.1(4242) idle", 1.0)
    other = Proc(2, 0, "postgres", "postgres: 15/main: sentinai_app other_db 127.0.0.1(4243) idle", 1.0)
    shared = Proc(3, 0, "postgres", "postgres: 15/main: walwriter ", 1.0)
    vacuum = Proc(4, 0, "postgres", "postgres: 15/main: autovacuum worker other_db", 1.0)
    assert backend.is_postgres_backend_of("bench_db") and not other.is_postgres_backend_of("bench_db")
    assert shared.is_postgres_shared() and not backend.is_postgres_shared() and not vacuum.is_postgres_shared()
