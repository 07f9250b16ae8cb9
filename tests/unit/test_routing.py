"""The one routing table: every task has a route, every queue is a quorum queue with a delivery limit
and a dead-letter exchange, and the agent queues have exactly the names operators use."""

from config import routing
from config.celery import app
from sentinai.pipeline import tasks as pipeline_tasks
from sentinai.pipeline.tasks import AgentTask


def test_every_registered_task_has_a_route():
    app.loader.import_default_modules()
    tasks = [name for name in app.tasks if not name.startswith("celery.")]
    assert "agents.triage.handle_batch" in tasks and "sentinai.scheduler.tick" in tasks
    queue_names = {q.name for q in routing.work_queues()}
    unrouted = [name for name in tasks if routing.queue_for_task(name) not in queue_names]
    assert unrouted == []


def test_router_sends_each_agent_task_to_its_own_queue():
    for agent in routing.AGENTS:
        route = app.amqp.router.route({}, f"agents.{agent}.handle_batch")
        assert route["queue"].name == agent
        assert route["queue"].exchange.name == "sentinai"


def test_agent_queue_names_are_exact():
    names = [q.name for q in routing.work_queues()]
    assert names == ["intake", "triage", "policy", "resolution", "playbook", "tool", "feedback", "sla", "scheduler"]
    assert routing.dead_letter_queue().name == "dead_letter"


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
