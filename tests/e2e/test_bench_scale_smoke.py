"""A short run of bench/scale.py's host phase: the real pipeline with its agent workers on network-
namespace hosts (their own addresses, services over veth), a second host added with tool workers
only. It checks the harness, not a figure (performance is measured by the bench, never by tests):
both hosts' tool workers call the tool from their own address, every exception ends, no execution
is called twice. About a minute: services of its own, migrated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.host import ROOT


def test_the_scale_bench_adds_a_host_whose_tool_workers_take_their_share(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_SETTINGS"))}
    proc = subprocess.run(
        [sys.executable, "bench/scale.py", "--processes", "", "--host-tools", "1", "--seconds", "2",
         "--warmup", "1", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    one, two = result["hosts"]
    assert one["placement"] == [{"host": 1, "tool_workers": 1}]
    assert two["placement"] == [{"host": 1, "tool_workers": 1}, {"host": 2, "tool_workers": 1}]
    for point in (one, two):
        assert point["drained"] and point["posted"] > 0 and point["tool_calls_per_second"] > 0
        assert point["tool_requests"] == 3 * point["posted"]  # three tools per settlement failure, all called
        assert point["second_attempts"] == 0
    # The calls came from the hosts' own addresses, the added host's included.
    assert set(one["calls_by_client"]) == {"10.77.0.11"}
    assert set(two["calls_by_client"]) == {"10.77.0.11", "10.77.0.12"}
    assert "two hosts vs one" in proc.stdout
