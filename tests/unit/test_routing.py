"""The one routing table: every task has a route, every queue is a quorum queue with a delivery limit
and a dead-letter exchange, and the agent queues have exactly the names operators use."""

import zlib
from collections import Counter

import pytest

from config import routing
from config.celery import app
from sentinai.pipeline import tasks as pipeline_tasks
from sentinai.pipeline.tasks import AgentTask
from sentinai.pipeline.worker import lane_share


def test_every_registered_task_has_a_route():
    app.loader.import_default_modules()
    tasks = [name for name in app.tasks if not name.startswith("celery.")]
    assert "agents.triage.handle_batch" in tasks and "sentinai.scheduler.tick" in tasks
    queue_names = {q.name for q in routing.work_queues()}
    unrouted = [
        name
        for name in tasks
        if (queue := routing.queue_for_task(name)) is None
        or not set(routing.expand_queue_names([queue])) <= queue_names
    ]
    assert unrouted == []


def test_router_sends_each_agent_batch_to_its_tenants_lane_of_the_agent():
    for agent in routing.LANED_AGENTS:
        route = app.amqp.router.route({}, f"agents.{agent}.handle_batch", args=[{"tenant_id": "acme"}])
        assert route["queue"].name == routing.lane_queue(agent, "acme") == f"{agent}.{routing.lane_of('acme')}"
        assert route["queue"].exchange.name == "sentinai"
    assert app.amqp.router.route({}, "agents.sla.scan")["queue"].name == "sla"
    assert app.amqp.router.route({}, "sentinai.scheduler.tick")["queue"].name == "scheduler"


def test_a_batch_that_names_no_tenant_has_no_lane():
    with pytest.raises(ValueError, match="names its tenant"):
        app.amqp.router.route({}, "agents.triage.handle_batch", args=[{}])


def test_agent_queue_names_are_exact():
    names = [q.name for q in routing.work_queues()]
    lanes = [f"{agent}.{n}" for agent in routing.LANED_AGENTS[:2] for n in range(4)]
    assert (
        names[:8]
        == lanes
        == ["intake.0", "intake.1", "intake.2", "intake.3", "triage.0", "triage.1", "triage.2", "triage.3"]
    )
    assert routing.LANED_AGENTS == ("intake", "triage", "policy", "resolution", "playbook", "tool", "feedback")
    assert names[-2:] == ["sla", "scheduler"] and len(names) == 7 * 4 + 2
    assert routing.dead_letter_queue().name == "dead_letter"


def test_tenants_map_to_lanes_by_a_stable_hash_and_spread_over_them():
    # crc32, not Python's per-process salted hash(): the API and every worker agree.
    assert routing.lane_of("acme") == str(zlib.crc32(b"acme") % 4) == "2"
    spread = Counter(routing.lane_of(f"tenant-{i}") for i in range(400))
    assert set(spread) == {"0", "1", "2", "3"} and min(spread.values()) > 60, spread


def test_a_dedicated_lane_is_configuration(settings):
    settings.SENTINAI = {**settings.SENTINAI, "DEDICATED_LANES": frozenset({"acme", "globex"})}
    assert routing.lane_queue("triage", "acme") == "triage.tenant-acme"
    assert routing.lane_queue("triage", "initech") == f"triage.{routing.lane_of('initech')}"
    assert routing.lane_queue("sla", "acme") == "sla"
    assert routing.agent_lanes("triage")[-2:] == ["triage.tenant-acme", "triage.tenant-globex"]
    assert "policy.tenant-globex" in {q.name for q in routing.work_queues()}


def test_an_agents_name_selects_all_its_lanes_and_a_lanes_name_only_that_lane(settings):
    settings.SENTINAI = {**settings.SENTINAI, "DEDICATED_LANES": frozenset({"acme"})}
    queues = routing.LaneQueues(routing.work_queues())
    queues.select(["triage", "scheduler"])
    assert list(queues.consume_from) == [*(f"triage.{n}" for n in range(4)), "triage.tenant-acme", "scheduler"]
    queues.deselect(["triage.tenant-acme"])
    assert "triage.tenant-acme" not in queues.consume_from and "triage.0" in queues.consume_from
    queues.select(["triage.tenant-acme"])
    assert list(queues.consume_from) == ["triage.tenant-acme"]
    assert isinstance(app.amqp.queues, routing.LaneQueues)


def test_work_queues_are_quorum_with_delivery_limit_and_dead_letter_exchange():
    for queue in routing.work_queues():
        args = queue.queue_arguments
        assert args["x-queue-type"] == "quorum"
        assert args["x-delivery-limit"] >= 1
        assert args["x-dead-letter-exchange"] == "sentinai.dlx"
        assert queue.exchange.type == "topic"
    assert routing.dead_letter_queue().exchange.name == "sentinai.dlx"


def test_reliability_settings():
    conf = app.conf
    assert conf.task_create_missing_queues is False
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_acks_on_failure is False
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["confirm_publish"] is True
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"


def test_unrouted_task_names_are_refused():
    assert routing.queue_for_task("something.else") is None


def test_every_batch_consuming_agent_has_a_generated_handle_batch_task_and_sla_its_scan():
    app.loader.import_default_modules()
    agent_tasks = sorted(name for name in app.tasks if name.startswith("agents."))
    assert agent_tasks == [
        "agents.feedback.handle_batch",
        "agents.intake.handle_batch",
        "agents.playbook.handle_batch",
        "agents.policy.handle_batch",
        "agents.resolution.handle_batch",
        "agents.sla.scan",
        "agents.tool.handle_batch",
        "agents.triage.handle_batch",
    ]
    for name in agent_tasks:
        assert isinstance(app.tasks[name], AgentTask), name


def test_a_generated_task_hands_its_batch_to_the_runner_under_its_agents_name(monkeypatch):
    app.loader.import_default_modules()
    calls = []
    monkeypatch.setattr(pipeline_tasks, "run_agent", lambda task, agent, body: calls.append((task.name, agent, body)))

    for agent in ("intake", "tool"):
        app.tasks[f"agents.{agent}.handle_batch"].run({"v": 1})

    assert calls == [("agents.intake.handle_batch", "intake", {"v": 1}), ("agents.tool.handle_batch", "tool", {"v": 1})]


def test_a_worker_on_several_lanes_keeps_a_slot_that_no_lane_may_take():
    assert lane_share(2, queues=4) == 1 and lane_share(4, queues=30) == 3
    # One slot cannot be shared; a worker on one lane (a tenant's own) uses all its slots.
    assert lane_share(1, queues=4) == 1 and lane_share(4, queues=1) == 4


def test_an_agent_may_have_a_batch_size_of_its_own(settings):
    settings.SENTINAI = {**settings.SENTINAI, "BATCH_SIZE": 500, "AGENT_BATCH_SIZES": {"tool": 4}}
    assert routing.batch_size("tool") == 4 and routing.batch_size("triage") == 500
    for bad in (0, -1, "8", 2.5, True):
        settings.SENTINAI = {**settings.SENTINAI, "AGENT_BATCH_SIZES": {"tool": bad}}
        with pytest.raises(ValueError, match="batch size of 'tool'"):
            routing.batch_size("tool")
