import os
import subprocess
import sys

from tests.support.host import ROOT


def _check(secret: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    if secret is not None:
        env["SECRET_KEY"] = secret
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_production_refuses_to_start_without_a_secure_secret():
    for secret in (None, "short", "insecure-dev-only-secret-key-change-me" * 2):
        result = _check(secret)
        assert result.returncode != 0
        assert "SECRET_KEY is missing or insecure" in result.stderr


def test_production_starts_with_a_strong_secret():
    result = _check("k" + os.urandom(48).hex())
    assert result.returncode == 0, result.stderr
