"""The dependency gauge's recovery probe (sentinai/kernel/dependencies.py), as pure logic: a process
that noted an outage finds out by itself when it is over, without waiting for its next piece of work."""

from __future__ import annotations

import time

import pytest

from sentinai.kernel import dependencies


@pytest.fixture(autouse=True)
def _fresh_state():
    dependencies.forget()
    saved = dict(dependencies._probes)
    yield
    dependencies.forget()
    dependencies._probes.clear()
    dependencies._probes.update(saved)


def _gauge(dependency: str) -> float:
    return dependencies.DEPENDENCY_UP.labels(dependency)._value.get()


def _wait(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_probed_dependency_comes_back_up_by_itself_once_the_probe_answers(caplog):
    answers = iter([OSError("refused"), OSError("refused"), None])
    calls = []

    def probe():
        calls.append(time.monotonic())
        answer = next(answers)
        if answer is not None:
            raise answer

    dependencies.probe_with("testdep", probe)
    caplog.set_level("WARNING", logger="sentinai.dependencies")
    assert dependencies.down("testdep", OSError("connection refused"))
    assert _gauge("testdep") == 0
    assert _wait(lambda: not dependencies.is_down("testdep")), calls
    assert _gauge("testdep") == 1
    assert len(calls) == 3  # two refusals, then the answer: and no probing after it
    time.sleep(0.8)
    assert len(calls) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("testdep unreachable" in line for line in lines) == 1, lines
    assert sum("testdep reachable again" in line for line in lines) == 1, lines


def test_without_a_probe_the_dependency_stays_down_until_the_process_reaches_it():
    dependencies.down("unprobed", "no answer")
    time.sleep(1.0)
    assert dependencies.is_down("unprobed") and _gauge("unprobed") == 0
    dependencies.up("unprobed")
    assert _gauge("unprobed") == 1


def test_one_probe_thread_per_outage_however_many_failures_are_noted():
    calls = []

    def probe():
        calls.append(1)
        raise OSError("still refused")

    dependencies.probe_with("flaky", probe)
    for _ in range(20):
        dependencies.down("flaky", OSError("refused"))
    threads = [t for t in __import__("threading").enumerate() if t.name == "sentinai-probe-flaky"]
    assert len(threads) == 1
    dependencies.up("flaky")  # the process reached it through its own work: the probe stops
    threads[0].join(timeout=10)
    assert not threads[0].is_alive()
