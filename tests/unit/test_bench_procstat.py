"""bench/procstat.py, which the benchmarks' CPU-by-component figures add up: this process is found with
its parent and the CPU it has used, and a busy loop shows up in the next snapshot."""

import os
import subprocess
import sys
import time

from bench.procstat import Proc, cpu_by_ancestor, processes
from bench.queries import cpu_by_process, cpu_used_since


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


def test_the_query_bench_counts_only_what_live_backends_used_since_the_first_reading():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(30)"])  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while (busy := cpu_by_process({child.pid})) and sum(busy.values()) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        me = os.getpid()
        before = cpu_by_process({me, child.pid})
        assert len(before) == 2 and sum(v for (pid, _), v in before.items() if pid == child.pid) >= 0.25
    finally:
        child.kill()
        child.wait()
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    after = cpu_by_process({me, child.pid})
    assert [pid for pid, _ in after] == [me]
    # The ended child's 0.3 s is not taken away (the difference of two sums went negative so); this process's
    # busy 0.2 s is counted.
    assert 0.15 <= cpu_used_since(before, after) < 1.0
    assert sum(after.values()) - sum(before.values()) < cpu_used_since(before, after)
