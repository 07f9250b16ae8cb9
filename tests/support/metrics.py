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


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """A /metrics response as {(name, frozenset of (label, value)): value}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        pairs = frozenset(tuple(p.split("=", 1)) for p in labels.rstrip("}").split(",") if p) if labels else frozenset()
        samples[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return samples
