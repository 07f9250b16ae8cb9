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
