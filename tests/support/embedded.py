"""`make run` (the embedded default) as a child process: started, waited for, stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.host import ROOT, embedded_env


def start_make_run(var_dir: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT, env=embedded_env(PORT=str(port), SENTINAI_VAR_DIR=str(var_dir)), stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"make run exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.5)
    raise AssertionError(f"no answer on port {port}:\n{log.read_text()}")


def stop(proc: subprocess.Popen, sig=signal.SIGINT, timeout: float = 30) -> int:
    os.killpg(proc.pid, sig)
    return proc.wait(timeout=timeout)
