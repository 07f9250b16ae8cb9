"""bench/procstat.py, which the benchmarks' CPU-by-component figures add up: this process is found with
its parent and the CPU it has used, and a busy loop shows up in the next snapshot."""

import os
import time

from bench.procstat import Proc, cpu_by_ancestor, processes


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


def test_each_process_counts_for_its_nearest_named_ancestor():
    tree = [
        Proc(1, 0, "init", "init", 100.0),  # under no root: left out
        Proc(10, 1, "python", "bench", 1.0),
        Proc(11, 10, "celery", "celery worker", 2.0),
        Proc(12, 11, "celery", "celery worker (child)", 3.0),  # a pool child counts for its worker
        Proc(13, 10, "gunicorn", "gunicorn", 4.0),
    ]
    groups = cpu_by_ancestor({10: "client", 11: "workers", 13: "api"}, iter(tree))
    assert groups == {"client": 1.0, "workers": 5.0, "api": 4.0}
