"""The platform's Prometheus counters as the test process sees them: summed over every process that
wrote to PROMETHEUS_MULTIPROC_DIR, which the test settings create per session and the worker
subprocesses inherit (tests/support/workers.py copies the environment)."""

from __future__ import annotations

import os

from sentinai.kernel.metrics import process_registry


def counter(name: str, **labels: str) -> float:
    """The value of one counter sample, e.g. counter("sentinai_events_duplicate_total", agent="triage");
    0 while no process has counted it. Tests compare it before and after, since the directory is
    shared by the whole session."""
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "workers' samples are only visible in multiprocess mode"
    return process_registry().get_sample_value(name, labels) or 0.0
