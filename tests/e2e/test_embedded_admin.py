"""A new user's `make run`: the output names the admin's URL and a demo login, the login opens the admin and
its operations overview (SQLite, the in-process broker), and the API docs' assets come from the embedded
server itself."""

from __future__ import annotations

import re
import time

import httpx

from tests.support.embedded import start_make_run, stop, wait_healthy
from tests.support.host import free_port

ADMIN_LINE = re.compile(r"Admin: (?P<url>http://\S+/admin/)\s+user (?P<user>\S+)\s+password (?P<password>\S+)")


def test_make_run_prints_a_demo_login_that_opens_the_admin_and_serves_the_docs_assets(tmp_path):
    port = free_port()
    log = tmp_path / "run.log"
    proc = start_make_run(tmp_path / "var", port, log)
    try:
        wait_healthy(port, proc, log)
        found = wait_for_line(log)
        assert found["url"] == f"http://127.0.0.1:{port}/admin/"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            form = browser.get("/admin/login/?next=/admin/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
            wrong = browser.post(
                "/admin/login/?next=/admin/",
                data={"csrfmiddlewaretoken": token, "username": found["user"], "password": "nope", "next": "/admin/"},
            )
            assert wrong.status_code == 200 and "Please enter the correct username and password" in wrong.text
            done = browser.post(
                "/admin/login/?next=/admin/",
                data={
                    "csrfmiddlewaretoken": token,
                    "username": found["user"],
                    "password": found["password"],
                    "next": "/admin/",
                },
            )
            assert done.status_code == 302 and done.headers["location"] == "/admin/", done.text[:300]
            overview = browser.get("/admin/overview/")
            assert overview.status_code == 200 and "Operations overview" in overview.text
            assert "SentinAI administration" in overview.text
            docs = browser.get("/api/docs/")
            assets = re.findall(r'(?:src|href)="(/static/[^"]+\.js)"', docs.text)
            assert assets and all(browser.get(a).status_code == 200 for a in assets)
    finally:
        stop(proc)


def wait_for_line(log) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = ADMIN_LINE.search(log.read_text())
        if match:
            return match.groupdict()
        time.sleep(0.2)
    raise AssertionError(f"no admin login in the output of make run:\n{log.read_text()}")
