"""The API docs work with no internet access: Swagger UI and ReDoc load only this server's own static
files (drf-spectacular-sidecar), which gunicorn serves itself (WhiteNoise) as in `make stack`.
That the page then renders the operations in a browser cut off from everything but loopback is
tests/e2e/test_browser.py's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.gunicorn import Gunicorn
from tests.support.host import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    with Gunicorn(tmp_path_factory.mktemp("gunicorn")) as server:
        yield server


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_load_only_this_servers_static_files_from_gunicorn(gunicorn, page):
    response = httpx.get(gunicorn.url + page, timeout=10)
    assert response.status_code == 200, response.text[:300]
    assets = ASSET.findall(response.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts
    for asset in assets:
        served = httpx.get(urljoin(gunicorn.url, asset), timeout=10)
        assert served.status_code == 200, (asset, served.status_code)
        assert served.content and (len(served.content) > 10_000 or not asset.endswith((".js", ".css")))
    assert all("javascript" in httpx.get(urljoin(gunicorn.url, s)).headers["content-type"] for s in scripts)
    assert "//" not in "".join(a.replace("/static/", "") for a in assets)
    schema = httpx.get(gunicorn.url + "/api/schema/", timeout=10)
    assert schema.status_code == 200 and "/api/exceptions/{tenant_id}" in schema.text


def test_the_admin_static_files_come_from_gunicorn_too(gunicorn):
    login = httpx.get(gunicorn.url + "/admin/login/", timeout=10)
    assert login.status_code == 200 and "SentinAI" in login.text
    css = next(a for a in ASSET.findall(login.text) if a.endswith(".css"))
    assert httpx.get(urljoin(gunicorn.url, css), timeout=10).status_code == 200


def test_production_settings_serve_what_collectstatic_collected(django_db_setup, tmp_path):
    """The container image's path: `collectstatic` at build time, gunicorn (WhiteNoise) serving STATIC_ROOT
    under production settings, with the apps' own folders not consulted."""
    static_root = tmp_path / "static"
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT, env={**os.environ, "STATIC_ROOT": str(static_root), "DJANGO_SETTINGS_MODULE": "config.settings.local"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    bundle = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert (static_root / bundle).exists()
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "k" + os.urandom(48).hex(),
        "STATIC_ROOT": str(static_root),
    }
    # Served from STATIC_ROOT, not from the package's folder: a file missing there is missing.
    css = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"
    for variant in static_root.glob(css + "*"):
        variant.unlink()
    with Gunicorn(tmp_path, env=env) as server:
        docs = httpx.get(server.url + "/api/docs/", timeout=10)
        assert docs.status_code == 200 and f"/static/{bundle}" in docs.text
        assert httpx.get(f"{server.url}/static/{bundle}", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/static/{css}", timeout=10).status_code == 404
