"""`make run` on a machine with no services configured: SQLite, the in-process broker, one process."""

import signal

from tests.support.embedded import start_make_run, stop, wait_healthy
from tests.support.host import free_port


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
