"""docker-compose.yml describes the same topology as `make stack` (this machine has no Docker engine to
run it, so the file is checked against the routing table it must follow)."""

from __future__ import annotations

from pathlib import Path

import yaml

from config import routing

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _queues(service: dict) -> list[str]:
    command = service.get("command") or []
    if command[:4] != ["celery", "-A", "config", "worker"]:
        return []
    return command[command.index("-Q") + 1].split(",")


def test_one_worker_service_per_agent_queue_and_the_schedulers():
    consumed = {name: _queues(service) for name, service in SERVICES.items()}
    for queue in (*routing.AGENTS, routing.SCHEDULER_QUEUE):
        owners = [name for name, queues in consumed.items() if queue in queues]
        assert owners == [queue], (queue, owners)
        assert consumed[queue] == [queue], "a worker service consumes its queue alone, so it scales alone"
    assert not any(routing.DEAD_LETTER_QUEUE in queues for queues in consumed.values())


def test_services_of_the_topology_and_their_configuration():
    assert {"postgres", "rabbitmq", "redis", "migrate", "web", "beat", "dlq", "flower"} <= set(SERVICES)
    assert "management" in SERVICES["rabbitmq"]["image"]
    assert SERVICES["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert SERVICES["dlq"]["command"] == ["python", "manage.py", "consume_dead_letters"]
    for name in ("web", "beat", "dlq", "flower", *routing.AGENTS):
        environment = SERVICES[name]["environment"]
        assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"} <= set(environment), name
        assert "production" in SERVICES[name]["build"]["dockerfile_inline"], name
    assert SERVICES["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert any(arg.startswith("--basic-auth=") for arg in SERVICES["flower"]["command"]), "Flower is not open"


def test_kafka_and_the_event_stream_relay():
    assert SERVICES["stream"]["command"] == ["python", "manage.py", "relay_event_stream"]
    assert SERVICES["stream"]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert SERVICES["web"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_only_the_one_shot_migrate_service_holds_the_schema_owners_credentials():
    holders = [name for name, service in SERVICES.items() if "DATABASE_OWNER_URL" in (service.get("environment") or {})]
    assert holders == ["migrate"]
    assert SERVICES["migrate"]["restart"] == "no"


# --- make stack (the Procfile under supervisord) and docker-compose: the same processes ------------

ROOT = Path(__file__).resolve().parents[2]
# Services of the infrastructure and monitoring, not processes of the platform (no Procfile line).
INFRASTRUCTURE = {"postgres", "rabbitmq", "redis", "kafka", "migrate", "prometheus", "grafana"}


def _supervision():
    import importlib.util

    spec = importlib.util.spec_from_file_location("supervision", ROOT / "scripts" / "supervision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argv(command: str) -> list[str]:
    """A Procfile command as argv: leading VAR=value and ${VAR:-default} expansions dropped, and a
    leading `nice -n N` (the Procfile's priority of background work; compose gives it cpu_shares)."""
    words = [w for w in command.split() if "=" not in w.split("-")[0] or w.startswith("-")]
    if words[:2] == ["nice", "-n"]:
        words = words[3:]
    return [w.split("${")[0] if "${" in w else w for w in words]


def test_background_processes_yield_the_cpu_to_the_api_in_both_supervisors():
    """Agents, beat, the scheduler, the SLA monitor, the dead-letter consumer and the relay run at a
    lower priority than the API (docs/performance.md, "Command latency under load"); Flower and
    the API at the normal one."""
    procfile = _supervision().parse_procfile(ROOT / "Procfile")
    for name, command in procfile.items():
        words = [w for w in command.split() if "=" not in w.split("-")[0] or w.startswith("-")]
        background = name not in ("web", "flower")
        assert (words[:3] == ["nice", "-n", "10"]) == background, (name, command)
        shares = SERVICES[name].get("cpu_shares")
        assert (shares is not None and shares < 1024) == background, (name, shares)


def _program(argv: list[str]) -> list[str]:
    """What a process runs, without its tuning: the command and, for Celery, the sub-command."""
    if argv[:1] == ["celery"]:
        return argv[: argv.index("-A") + 3]
    return argv[:3] if argv[:2] == ["python", "manage.py"] else argv[:2]


def test_the_procfile_and_docker_compose_run_the_same_processes():
    procfile = _supervision().parse_procfile(ROOT / "Procfile")
    assert set(procfile) == set(SERVICES) - INFRASTRUCTURE
    for name, command in procfile.items():
        ours, theirs = _argv(command), SERVICES[name]["command"]
        assert _program(ours) == _program(theirs), (name, ours, theirs)
        if _program(ours)[-1] == "worker":
            for flag in ("-Q", "-n"):
                assert ours[ours.index(flag) + 1] == theirs[theirs.index(flag) + 1], (name, flag)


def test_every_process_is_restarted_by_both_supervisors():
    supervision = _supervision()
    conf = supervision.render(supervision.parse_procfile(ROOT / "Procfile"), var_dir=Path("/tmp/sentinai-var"))
    import configparser

    parser = configparser.RawConfigParser()
    parser.read_string(conf)
    programs = {s.split(":", 1)[1]: parser[s] for s in parser.sections() if s.startswith("program:")}
    assert set(programs) == set(SERVICES) - INFRASTRUCTURE
    for name, program in programs.items():
        assert program["autorestart"] == "true" and program["autostart"] == "true", name
        assert int(program["startretries"]) >= 3 and int(program["startsecs"]) >= 1, name
        assert program["stopasgroup"] == "true" and program["killasgroup"] == "true", name
        assert SERVICES[name]["restart"] == "unless-stopped", name
        if _program(SERVICES[name]["command"])[-1] == "worker":
            assert int(program["stopwaitsecs"]) == int(SERVICES[name]["stop_grace_period"].rstrip("s")), name
    assert "eventlistener:crashloop" in parser.sections()
    assert parser["eventlistener:crashloop"]["events"] == "PROCESS_STATE_FATAL"


def test_supervisord_runs_each_procfile_command_as_is_through_the_shell():
    supervision = _supervision()
    assert supervision.shell_command("FLOWER_UNAUTHENTICATED_API=true celery -A config flower") == (
        "/bin/sh -c 'FLOWER_UNAUTHENTICATED_API=true exec celery -A config flower'"
    )
    assert supervision.shell_command("celery -A config worker -n intake@%h") == (
        "/bin/sh -c 'exec celery -A config worker -n intake@%%h'"
    )


def test_cross_tenant_processes_hold_the_platform_role_and_agent_workers_the_application_role():
    def role(name: str) -> str:
        return SERVICES[name]["environment"]["DATABASE_URL"].split("//")[1].split(":")[0]

    platform = {"web", "dlq", "stream", *routing.PLATFORM_QUEUES}
    for name in platform:
        assert role(name) == "sentinai_platform", name
    for name in set(routing.AGENTS) - platform:
        assert role(name) == "sentinai_app", name
    postgres = SERVICES["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "postgres", "the schema owner is not the image's superuser"
    assert "NOSUPERUSER" in (Path(__file__).resolve().parents[2] / "scripts/postgres-init.sh").read_text()
