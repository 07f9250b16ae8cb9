"""Encryption in transit, as configuration: the platform's database path against a throwaway
PostgreSQL cluster started with a self-signed certificate, `ssl=on` and TLS-only access."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.host import ROOT, free_port

BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
SERVICE_VARIABLES = ("DATABASE_URL", "DATABASE_OWNER_URL", "DJANGO_SETTINGS_MODULE")

PROBE = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')\n"
    "    print('SSL', *c.fetchone())\n"
)


def as_postgres(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True, **kwargs
    )


@pytest.fixture
def tls_cluster():
    root = Path(tempfile.mkdtemp(prefix="sentinai-tls-"))
    shutil.chown(root, "postgres", "postgres")
    data, socket_dir = root / "data", root / "socket"
    cert, key = root / "server.crt", root / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    for path in (cert, key):
        shutil.chown(path, "postgres", "postgres")
    key.chmod(0o600)
    socket_dir.mkdir()
    shutil.chown(socket_dir, "postgres", "postgres")
    as_postgres(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    # TLS only: plain TCP connections are refused.
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\nlocal all all trust\n"
    )
    port = free_port()
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"
    as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        yield port, cert
    finally:
        as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def platform(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": database_url})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_database_path_runs_encrypted_with_sslmode_verify_full(tls_cluster):
    port, cert = tls_cluster
    url = f"postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={cert}"
    migrate = platform(url, "migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    probe = platform(url, "shell", "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    ssl_line = next(line for line in probe.stdout.splitlines() if line.startswith("SSL"))
    assert ssl_line.startswith("SSL True TLSv1."), ssl_line


def test_sslmode_require_encrypts_and_plain_connections_are_refused(tls_cluster):
    port, _ = tls_cluster
    probe = platform(f"postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require", "shell", "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    assert "SSL True" in probe.stdout
    plain = platform(f"postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable", "shell", "-c", PROBE)
    assert plain.returncode != 0 and "no encryption" in plain.stderr
