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


def test_session_bounds_are_sent_as_libpq_options_and_a_zero_leaves_a_bound_to_the_server(monkeypatch):
    from config.settings import base

    monkeypatch.delenv("DB_STATEMENT_TIMEOUT_MS", raising=False)
    monkeypatch.delenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", raising=False)
    assert base._session_timeouts() == "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "1500")
    monkeypatch.setenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "0")
    assert base._session_timeouts() == "-c statement_timeout=1500"
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "0")
    assert base._session_timeouts() == ""  # nothing sent: a pooler that refuses `options` accepts it
    db = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
    base._tune_database(db, "default")
    assert "options" not in db["OPTIONS"]
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "1500")
    owner = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
    base._tune_database(owner, "owner")
    assert "options" not in owner["OPTIONS"]
