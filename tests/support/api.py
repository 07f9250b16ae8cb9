"""Helpers of the HTTP API tests: tenants with keys, a client that sends the key, row counts."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.test import Client

from exceptions_app.models import ExceptionRecord
from playbooks_app.models import Playbook, PlaybookRun, PlaybookStep
from sentinai.api import auth
from sentinai.api.problems import CONTENT_TYPE as PROBLEM_TYPE
from sentinai.models import DeadLetter, ExceptionEvent, Outbox, Tenant
from sentinai.tenancy import admission, services, tenants
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import make_tenant
from tools_app.models import Tool, ToolExecution

GENEROUS = {"rate_per_second": 1000.0, "burst": 2000, "max_in_flight": 100_000}
TOOL = "retry_settlement"


def forget_caches() -> None:
    """The API caches verified keys (10 s) and tenant rows (5 s) in process."""
    auth.forget_cached_keys()
    tenants.forget()


class Api:
    """django.test.Client that sends `Authorization: Bearer <key>` and JSON bodies."""

    def __init__(self, key: str | None):
        self.key = key
        # Unhandled errors answer 500 (a problem document), as they would over the network.
        self.client = Client(raise_request_exception=False)

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        extra = {}
        if self.key is not None:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {self.key}"
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        return extra

    def post(self, path: str, body: Any = None, *, raw: str | bytes | None = None, headers=None):
        data = raw if raw is not None else json.dumps({} if body is None else body)
        return self.client.post(path, data=data, content_type="application/json", **self._headers(headers))

    def get(self, path: str, params: dict[str, Any] | None = None, *, headers=None):
        return self.client.get(path, data=params or {}, **self._headers(headers))


@dataclass
class Party:
    tenant_id: str
    key: str
    api: Api


TENANT_SCOPES = ("ingest", "read", "approve")


def tenant_with_key(tenant_id: str, *, operator: bool = False, scopes=TENANT_SCOPES, name: str = "", **limits) -> Party:
    """A tenant (generous admission limits unless given) with a fresh admission state and a key that
    ingests, reads and approves for it unless `scopes` say otherwise."""
    tenant = make_tenant(tenant_id, **{**GENEROUS, **limits})
    admission.backend().reset(tenant_id)
    tenants.forget(tenant_id)
    _, key = services.api_key_create(tenant=tenant, name=name, scopes=scopes, is_operator=operator)
    return Party(tenant_id, key, Api(key))


def key_of(tenant_id: str, *, scopes, name: str = "") -> Party:
    """Another key of an existing tenant."""
    _, key = services.api_key_create(tenant=Tenant.objects.get(pk=tenant_id), name=name, scopes=scopes)
    return Party(tenant_id, key, Api(key))


def operator_of(tenant_id: str, *, name: str = "") -> Party:
    """An operate + read key of `tenant_id`."""
    tenant = make_tenant(tenant_id, **GENEROUS)
    _, key = services.api_key_create(tenant=tenant, name=name, scopes=("read",), is_operator=True)
    return Party(tenant_id, key, Api(key))


def ingest_body(**fields) -> dict[str, Any]:
    body = {
        "source_system": "core-banking",
        "source_ref": f"ref-{uuid.uuid4().hex[:12]}",
        "exception_type": "payment_failed",
        "occurred_at": "2025-01-02T03:04:05Z",
        "payload": {"amount": 125.5, "currency": "EUR"},
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not Ellipsis}


def ingest(party: Party, **fields) -> str:
    """Report an exception through the API; returns its id."""
    response = party.api.post(f"/api/exceptions/{party.tenant_id}", ingest_body(**fields))
    assert response.status_code == 202, response.content
    return response.json()["exception_id"]


def counts(tenant_id: str | None = None) -> dict[str, int]:
    """Rows of the write side (across tenants, or of one tenant)."""
    with all_tenants_scope():
        models = {
            "exceptions": ExceptionRecord,
            "events": ExceptionEvent,
            "outbox": Outbox,
            "tool_executions": ToolExecution,
            "dead_letters": DeadLetter,
        }
        out = {}
        for name, model in models.items():
            qs = model.objects.all()
            if tenant_id is not None:
                qs = qs.filter(tenant_id=tenant_id)
            out[name] = qs.count()
        return out


def events_of(exception_id: str) -> list[ExceptionEvent]:
    with all_tenants_scope():
        return list(ExceptionEvent.objects.filter(exception_id=exception_id).order_by("sequence"))


def exception_row(exception_id: str) -> ExceptionRecord | None:
    with all_tenants_scope():
        return ExceptionRecord.objects.filter(id=exception_id).first()


def outbox_rows(tenant_id: str | None = None) -> list[Outbox]:
    with all_tenants_scope():
        qs = Outbox.objects.order_by("id")
        if tenant_id is not None:
            qs = qs.filter(tenant_id=tenant_id)
        return list(qs)


def make_tool(tenant_id: str, name: str = TOOL) -> Tool:
    with tenant_scope(tenant_id):
        return Tool.objects.create(tenant_id=tenant_id, name=name, kind="builtin", config={"callable": "noop"})


def make_playbook(tenant_id: str, name: str = "retry-payment", steps: int = 3) -> Playbook:
    with tenant_scope(tenant_id):
        playbook = Playbook.objects.create(
            tenant_id=tenant_id,
            pack="finance",
            pack_version=1,
            name=name,
            version=1,
            description=f"{name} playbook",
            match={"exception_type": "payment_failed"},
        )
        actions = ["tool", "approval", "resolve"]
        PlaybookStep.objects.bulk_create(
            [
                PlaybookStep(
                    playbook=playbook,
                    tenant_id=tenant_id,
                    position=position,
                    name=f"step-{position}",
                    action=actions[(position - 1) % len(actions)],
                    tool=TOOL if actions[(position - 1) % len(actions)] == "tool" else "",
                    params={"n": position},
                )
                # Created out of order: the API must answer them by position.
                for position in reversed(range(1, steps + 1))
            ]
        )
    return playbook


def await_approval(tenant_id: str, exception_id: str, playbook: Playbook, position: int = 2) -> PlaybookRun:
    """A playbook run of the exception waiting for a human decision at `position`."""
    with tenant_scope(tenant_id):
        return PlaybookRun.objects.create(
            tenant_id=tenant_id,
            exception_id=exception_id,
            playbook=playbook,
            status="awaiting_approval",
            current_position=position,
        )


def make_dead_letter(tenant_id: str | None, *, event_id: str | None = None, exception_id: str | None = None, **fields):
    values = {
        "tenant_id": tenant_id,
        "source": DeadLetter.Source.HANDLER,
        "consumer": "intake",
        "event_id": event_id,
        "exception_id": exception_id,
        "event_ids": [event_id] if event_id else [],
        "error": "RuntimeError: boom",
        "attempts": 5,
    }
    values.update(fields)
    with all_tenants_scope():
        return DeadLetter.objects.create(**values)


def assert_problem(response, status: int, kind: str | None = None) -> dict[str, Any]:
    """An RFC 7807 problem document with this status (and problem type)."""
    assert response.status_code == status, (response.status_code, response.content[:2000])
    assert response["Content-Type"].startswith(PROBLEM_TYPE), response["Content-Type"]
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if kind is not None:
        assert body["type"].endswith("/" + kind), body["type"]
    return body
