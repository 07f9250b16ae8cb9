"""`make run` on a machine with no services configured: SQLite, the in-process broker, one process."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.host import ROOT, embedded_env, free_port


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


def test_make_run_serves_health_on_sqlite_and_the_in_process_broker(tmp_path):
    port = free_port()
    log = tmp_path / "run.log"
    proc = start_make_run(tmp_path / "var", port, log)
    try:
        response = wait_healthy(port, proc, log)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["database"]["engine"] == "sqlite"
        assert body["broker"]["transport"] == "memory"
        assert (tmp_path / "var" / "sentinai.sqlite3").exists()
        output = log.read_text()
        assert f"http://127.0.0.1:{port}" in output and "acme-finance:operator" in output
    finally:
        code = stop(proc)
    # Ctrl-C reaches make too, which then reports the interrupt (-SIGINT); the platform itself must
    # have shut down cleanly.
    output = log.read_text()
    assert code in (0, -signal.SIGINT), output
    assert output.rstrip().endswith("stopped") and "Traceback" not in output, output
