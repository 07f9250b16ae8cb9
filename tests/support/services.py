"""Private instances of PostgreSQL 15, RabbitMQ and Redis for fault tests: each in its own temporary
directory, on free loopback ports, started and stopped by the test that owns it. Restarting one never
touches the shared services of scripts/services.sh, the rest of the suite or another engineer's run.

- PostgreSQL: a cluster made with initdb, run as the `postgres` OS user, trust authentication on
  loopback, with the project's roles (`sentinai` owns the schema, `sentinai_app` is bound by row-level
  security, `sentinai_platform` crosses tenants) and database `sentinai`.
- RabbitMQ: a node of its own (RABBITMQ_NODENAME, node and distribution ports, Mnesia and log
  directories, config without the management plugin), run as root with its own Erlang cookie (HOME).
- Redis: redis-server without persistence.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.host import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not up after {timeout}s")


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivatePostgres:
    """`also_listen`: an address besides loopback to listen on (and trust connections from its /24), e.g. a
    bridge that network-namespace hosts reach it by (bench/scale.py)."""

    def __init__(self, base: Path, also_listen: str | None = None):
        self.also_listen = also_listen
        self.dir = base / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "postgres.log"

    def _as_postgres(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, check=check, timeout=timeout
        )

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as_postgres(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"
            )
            listen = ",".join(["127.0.0.1", *([self.also_listen] if self.also_listen else [])])
            if self.also_listen:
                with (self.data / "pg_hba.conf").open("a") as hba:
                    network = ipaddress.ip_network(f"{self.also_listen}/24", strict=False)
                    hba.write(f"host all all {network} trust\n")
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"port = {self.port}\nlisten_addresses = '{listen}'\nunix_socket_directories = '{self.dir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
                )
            self._up()
            # As scripts/services.sh makes them: the owner, the tenant-bound application role, and the
            # platform role of the processes that cross tenants (the owner is a member, for migrations).
            self.psql(
                "CREATE ROLE sentinai LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS; "
                "CREATE ROLE sentinai_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB; "
                "CREATE ROLE sentinai_platform LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB; "
                "GRANT sentinai_platform TO sentinai;"
            )
            self.psql("CREATE DATABASE sentinai OWNER sentinai")
        else:
            self._up()
        return self

    def _up(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop (fast: every connection is terminated) and start again."""
        self.stop()
        time.sleep(down_seconds)
        self._up()

    def psql(self, sql: str, db: str = "postgres") -> str:
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
             "-qtAc", sql],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    def url(self, role: str = "sentinai_app", db: str = "sentinai", host: str = "127.0.0.1") -> str:
        return f"postgres://{role}@{host}:{self.port}/{db}"

    def cleanup(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbit:
    def __init__(self, base: Path, also_listen: str | None = None):
        self.also_listen = also_listen
        self.dir = base / "rabbit"
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"sentinai-faults-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            {
                "HOME": str(self.dir),
                "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
                "RABBITMQ_CONFIG_FILES": str(self.dir / "conf.d"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            }
        )
        return env

    def ctl(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "-q", *argv],
            env=self.env(), capture_output=True, text=True, check=check, timeout=timeout,
        )  # fmt: skip

    def start(self) -> PrivateRabbit:
        for sub in ("mnesia", "log", "conf.d"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            # A fault test restarts the broker: keep the node's own recovery quick.
            "heartbeat = 10\n"
            + (f"listeners.tcp.bridge = {self.also_listen}:{self.port}\n" if self.also_listen else "")
        )
        (self.dir / "advanced.config").write_text("[].\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        log = (self.dir / "server.log").open("a")
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.await_startup()
        self.ctl("add_vhost", "sentinai")
        self.ctl("set_permissions", "-p", "sentinai", "guest", ".*", ".*", ".*")
        return self

    def await_startup(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError((self.dir / "server.log").read_text()[-3000:])
            if self.ctl("await_startup", "--timeout", "5", check=False, timeout=30).returncode == 0:
                _wait(lambda: _port_open(self.port), 30, "RabbitMQ's AMQP listener")
                return
            time.sleep(0.5)
        raise TimeoutError(f"RabbitMQ node {self.node} not up after {timeout}s")

    def restart(self, down_seconds: float = 0.0) -> None:
        """The issue's operator: `rabbitmqctl stop_app; start_app` (every connection is closed)."""
        self.ctl("stop_app")
        time.sleep(down_seconds)
        self.ctl("start_app")
        self.await_startup()

    def url(self, vhost: str = "sentinai", host: str = "127.0.0.1") -> str:
        return f"amqp://guest:guest@{host}:{self.port}/{vhost}"

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("stop", check=False, timeout=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, base: Path, also_listen: str | None = None):
        self.also_listen = also_listen
        self.dir = base / "redis"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", *([self.also_listen] if self.also_listen else []), "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            start_new_session=True,
        )  # fmt: skip
        _wait(lambda: _port_open(self.port), 20, "Redis")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def url(self, db: int = 0, host: str = "127.0.0.1") -> str:
        return f"redis://{host}:{self.port}/{db}"

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SharedPostgres:
    """A database of its own on the shared PostgreSQL of scripts/services.sh (port 5432, its roles),
    made fresh by start() and dropped by cleanup(): for benchmarks that run the topology on the
    services `make stack` uses (their settings, fsync on), not on a private throwaway cluster. It
    cannot be restarted: fault tests use PrivatePostgres."""

    def __init__(self, db: str, port: int = 5432):
        self.db = db
        self.port = port

    def _admin(self, sql: str) -> None:
        import psycopg

        # As the superuser: WITH (FORCE) must end the runtime roles' connections of a previous run.
        with psycopg.connect(self.url("postgres", "postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def start(self) -> SharedPostgres:
        self._admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self._admin(f'CREATE DATABASE "{self.db}" OWNER sentinai')
        return self

    def url(self, role: str = "sentinai_app", db: str | None = None) -> str:
        return f"postgres://{role}@127.0.0.1:{self.port}/{db or self.db}"

    def cleanup(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


class SharedRabbit:
    """A vhost of its own on the shared RabbitMQ (created if missing, its queues deleted by start()
    and cleanup() so a run starts with nothing queued)."""

    def __init__(self, vhost: str, port: int = 5672):
        self.vhost = vhost
        self.port = port

    def _ctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-q", *argv], capture_output=True, text=True, check=check, timeout=120)

    def _empty(self) -> None:
        names = self._ctl("--no-table-headers", "-p", self.vhost, "list_queues", "name", check=False).stdout
        for name in names.split():
            self._ctl("-p", self.vhost, "delete_queue", name, check=False)

    def start(self) -> SharedRabbit:
        if self.vhost not in self._ctl("list_vhosts").stdout.split():
            self._ctl("add_vhost", self.vhost)
        self._ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        self._empty()
        return self

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{self.vhost}"

    def cleanup(self) -> None:
        self._empty()


class SharedRedis:
    """A database number on the shared Redis. Never flushed: another run may use the same number, and
    what the platform keeps there (admission buckets and in-flight counts per tenant) is reconciled
    with the fresh database by the platform itself."""

    def __init__(self, db: int, port: int = 6379):
        self.db = db
        self.port = port

    def start(self) -> SharedRedis:
        return self

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def cleanup(self) -> None:
        pass
