"""How the tool agent's perform records attempts (tools_app.services.tool_executions_attempt), on PostgreSQL:
an in-process builtin's attempt that ends is left for the write that ends the execution, a retryable one is
counted at once, and an execution that already ended is not attempted again."""

from __future__ import annotations

import uuid

import pytest

from sentinai.eventstore.events import Envelope
from sentinai.tenancy.scope import tenant_scope
from tests.support.factories import make_exceptions, make_tenant
from tools_app import builtins, services
from tools_app.models import Tool, ToolExecution
from tools_app.runners import AlreadyFinished, Attempt

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def flaky_builtin():
    @builtins.builtin("test_flaky")
    def flaky(params, ctx):
        raise builtins.ToolError("the system behind it is busy", retryable=True)

    yield "test_flaky"
    builtins.REGISTRY.pop("test_flaky", None)


def _execution(tenant_id: str, exception_id: str, tool: Tool, **fields) -> ToolExecution:
    with tenant_scope(tenant_id):
        return ToolExecution.objects.create(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            exception_id=exception_id,
            tool=tool,
            tool_name=tool.name,
            request={"params": {"trade_id": "T-1"}},
            **fields,
        )


def _requested(tenant_id: str, exception_id: str, execution: ToolExecution) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type="ToolExecutionRequested",
        tenant_id=tenant_id,
        exception_id=exception_id,
        sequence=1,
        causation_id=None,
        producer="playbook",
        payload={"execution_id": str(execution.id), "tool": execution.tool_name, "params": {"trade_id": "T-1"}},
    )


def _row(tenant_id: str, execution: ToolExecution) -> ToolExecution:
    with tenant_scope(tenant_id):
        return ToolExecution.objects.get(id=execution.id)


def test_a_builtin_attempt_that_ends_is_not_written_before_the_write_that_ends_it(flaky_builtin):
    tenant = make_tenant("acme-attempts")
    (exception_id,) = make_exceptions(tenant.id, 1)
    with tenant_scope(tenant.id):
        good = Tool.objects.create(tenant=tenant, name="retry_settlement", kind="builtin",
                                   config={"callable": "retry_settlement"}, max_attempts=3)  # fmt: skip
        busy = Tool.objects.create(tenant=tenant, name="busy", kind="builtin",
                                   config={"callable": flaky_builtin}, max_attempts=3)  # fmt: skip
    succeeding = _execution(tenant.id, exception_id, good)
    retried = _execution(tenant.id, exception_id, busy, attempts=1, status="running")
    done = _execution(tenant.id, exception_id, good, status="succeeded", attempts=1)
    requests = [_requested(tenant.id, exception_id, e) for e in (succeeding, retried, done)]

    effects = services.tool_executions_attempt(tenant=tenant, requests=requests)

    ok, again, finished = (effects[r.event_id] for r in requests)
    # The succeeded builtin: its outcome and count are handed to decide; the row is as it was requested.
    assert isinstance(ok, Attempt) and ok.outcome.status == "succeeded" and ok.outcome.response["trade_id"] == "T-1"
    assert (ok.attempts, ok.recorded, ok.started_at) == (1, False, None)
    row = _row(tenant.id, succeeding)
    assert (row.status, row.attempts, row.started_at) == ("requested", 0, None)
    # The retryable failure: counted and committed now, since the retry commits nothing else.
    assert isinstance(again, Attempt) and again.outcome.status == "retry" and again.attempts == 2 and again.recorded
    row = _row(tenant.id, retried)
    assert (row.status, row.attempts) == ("running", 2) and row.started_at is not None
    # The execution that had ended is not attempted again.
    assert finished == AlreadyFinished("succeeded")
    assert _row(tenant.id, done).attempts == 1
