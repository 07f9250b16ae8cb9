"""Tenant isolation over HTTP, endpoint by endpoint: tenant A's key never reaches, changes or learns of
tenant B's data; an operator key (of A) reads every tenant and writes for none but A; a key does only
what its scopes allow."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

from sentinai.models import DeadLetter
from sentinai.tenancy.scope import all_tenants_scope
from tests.support.api import (
    TOOL,
    Api,
    Party,
    assert_problem,
    await_approval,
    counts,
    events_of,
    forget_caches,
    ingest,
    key_of,
    make_dead_letter,
    make_playbook,
    make_tool,
    operator_of,
    tenant_with_key,
)

pytestmark = pytest.mark.django_db(transaction=True)

A, B = "alpha", "bravo-corp"


@dataclass
class World:
    a: Party
    b: Party
    operator: Party
    ids: dict[str, str]  # a_exc, b_exc, a_exec, b_exec, a_pb, b_pb, a_dl, b_dl, a_event, b_event
    b_secrets: tuple[str, ...]

    def fill(self, template):
        """Substitute {A}, {B}, {b_exc}, ... in a path or (nested) body."""
        values = {"A": A, "B": B, **self.ids}
        if isinstance(template, str):
            return template.format(**values)
        if isinstance(template, dict):
            return {k: self.fill(v) for k, v in template.items()}
        if isinstance(template, list):
            return [self.fill(v) for v in template]
        return template


def _populate(party: Party, marker: str) -> dict[str, str]:
    make_tool(party.tenant_id)
    exception_id = ingest(
        party,
        source_ref=f"{marker}-REF",
        exception_type=f"{marker.lower()}_type",
        payload={"marker": f"{marker}-payload"},
    )
    (event,) = events_of(exception_id)
    execution = party.api.post("/api/tools/execute", {"exception_id": exception_id, "tool": TOOL})
    assert execution.status_code == 202, execution.content
    playbook = make_playbook(party.tenant_id, name=f"{marker.lower()}-playbook")
    await_approval(party.tenant_id, exception_id, playbook, position=2)
    letter = make_dead_letter(party.tenant_id, event_id=str(event.event_id), exception_id=exception_id)
    return {
        "exc": exception_id,
        "event": str(event.event_id),
        "exec": execution.json()["execution_id"],
        "pb": str(playbook.id),
        "dl": str(letter.pk),
    }


@pytest.fixture
def world() -> World:
    forget_caches()
    a = tenant_with_key(A)
    b = tenant_with_key(B)
    operator = operator_of(A)
    ids = {f"a_{k}": v for k, v in _populate(a, "ALPHA").items()}
    ids |= {f"b_{k}": v for k, v in _populate(b, "BRAVO").items()}
    secrets = (
        B, "BRAVO-REF", "bravo_type", "BRAVO-payload", "bravo-playbook", b.key.split(".")[0],
        ids["b_exc"], ids["b_event"], ids["b_exec"], ids["b_pb"],
    )  # fmt: skip
    yield World(a, b, operator, ids, secrets)
    forget_caches()


def _call(api: Api, method: str, path: str, body=None):
    return api.get(path) if method == "GET" else api.post(path, body)


def _assert_nothing_of_b(world: World, response) -> None:
    text = response.content.decode()
    for secret in world.b_secrets:
        assert secret not in text, (secret, text)


def _state_of_b(world: World) -> tuple:
    with all_tenants_scope():
        letter = DeadLetter.objects.values_list("status", "replay_count").get(pk=world.ids["b_dl"])
    return counts(B), [e.event_id for e in events_of(world.ids["b_exc"])], letter


INGEST = {"source_system": "erp", "source_ref": "X-1", "payload": {"a": 1}}

# Every endpoint with a tenant in its path, addressed at B's path (B's exception where it takes one).
TENANT_PATH_ENDPOINTS = {
    "ingest": ("POST", "/api/exceptions/{B}", INGEST),
    "list": ("GET", "/api/exceptions/{B}", None),
    "batch": ("POST", "/api/exceptions/{B}/batch", {"items": [INGEST]}),
    "manual": ("POST", "/api/exceptions/{B}/manual", {"exception_type": "fraud_alert"}),
    "detail": ("GET", "/api/exceptions/{B}/{b_exc}", None),
    "playbook-view": ("GET", "/api/exceptions/{B}/{b_exc}/playbook", None),
    "recalculate": ("POST", "/api/exceptions/{B}/{b_exc}/playbook/recalculate", {}),
    "approve": ("POST", "/api/exceptions/{B}/{b_exc}/approve", {"decision": "approve"}),
    "feedback": ("POST", "/api/exceptions/{B}/{b_exc}/feedback", {"rating": 1}),
}

# Every endpoint that reaches an object by id, aimed at one of B's objects (under A's own path).
BY_ID_ENDPOINTS = {
    "detail": ("GET", "/api/exceptions/{A}/{b_exc}", None),
    "playbook-view": ("GET", "/api/exceptions/{A}/{b_exc}/playbook", None),
    "recalculate": ("POST", "/api/exceptions/{A}/{b_exc}/playbook/recalculate", {}),
    "approve": ("POST", "/api/exceptions/{A}/{b_exc}/approve", {"decision": "approve"}),
    "feedback": ("POST", "/api/exceptions/{A}/{b_exc}/feedback", {"rating": 1}),
    "tool-execute": ("POST", "/api/tools/execute", {"exception_id": "{b_exc}", "tool": TOOL}),
    "tool-execution": ("GET", "/api/tools/executions/{b_exec}", None),
    "playbook": ("GET", "/api/playbooks/{b_pb}", None),
}

ALL_ENDPOINTS = {
    **{f"tenant-path:{k}": v for k, v in TENANT_PATH_ENDPOINTS.items()},
    **{f"by-id:{k}": v for k, v in BY_ID_ENDPOINTS.items()},
    "tool-executions": ("GET", "/api/tools/executions", None),
    "dead-letters": ("GET", "/api/dead-letters", None),
    "dead-letter-replay": ("POST", "/api/dead-letters/{b_dl}/replay", None),
}


@pytest.mark.parametrize("name", ALL_ENDPOINTS)
def test_every_endpoint_needs_a_key(world, name):
    method, path, body = ALL_ENDPOINTS[name]
    before = _state_of_b(world), counts(A)
    response = _call(Api(None), method, world.fill(path), world.fill(body))
    assert_problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="sentinai"'
    _assert_nothing_of_b(world, response)
    assert (_state_of_b(world), counts(A)) == before


@pytest.mark.parametrize("name", TENANT_PATH_ENDPOINTS)
def test_a_key_on_another_tenants_path_is_403_and_reveals_nothing(world, name):
    method, path, body = TENANT_PATH_ENDPOINTS[name]
    before = _state_of_b(world), counts(A)
    response = _call(world.a.api, method, world.fill(path), world.fill(body))
    problem = assert_problem(response, 403, "forbidden")
    _assert_nothing_of_b(world, response)
    assert (_state_of_b(world), counts(A)) == before
    # The answer is the same whether or not the other tenant (or its exception) exists.
    ghost = world.fill(path).replace(B, "ghost-corp").replace(world.ids["b_exc"], str(uuid.uuid4()))
    assert _call(world.a.api, method, ghost, world.fill(body)).json() == problem


@pytest.mark.parametrize("name", TENANT_PATH_ENDPOINTS)
def test_b_is_refused_on_as_path_too(world, name):
    method, path, body = TENANT_PATH_ENDPOINTS[name]
    path = path.replace("{B}", "{A}").replace("{b_exc}", "{a_exc}")
    before = counts(A)
    assert_problem(_call(world.b.api, method, world.fill(path), world.fill(body)), 403, "forbidden")
    assert counts(A) == before


@pytest.mark.parametrize("name", BY_ID_ENDPOINTS)
def test_bs_objects_reached_by_id_are_404_exactly_like_objects_that_do_not_exist(world, name):
    method, path, body = BY_ID_ENDPOINTS[name]
    before = _state_of_b(world), counts(A)
    response = _call(world.a.api, method, world.fill(path), world.fill(body))
    problem = assert_problem(response, 404, "not-found")
    _assert_nothing_of_b(world, response)
    assert (_state_of_b(world), counts(A)) == before
    # Indistinguishable from an id that exists nowhere.
    missing = {key: str(uuid.uuid4()) for key in ("b_exc", "b_exec", "b_pb")}
    nowhere = World(world.a, world.b, world.operator, {**world.ids, **missing}, world.b_secrets)
    answer = _call(world.a.api, method, nowhere.fill(path), nowhere.fill(body))
    assert (answer.status_code, answer.json()) == (404, problem)


@pytest.mark.parametrize("target", ["b_dl", "a_dl"])
def test_dead_letter_replay_with_a_tenant_key_is_403_for_any_dead_letter(world, target):
    before = _state_of_b(world), counts(A)
    response = world.a.api.post(f"/api/dead-letters/{world.ids[target]}/replay")
    assert_problem(response, 403, "forbidden")
    _assert_nothing_of_b(world, response)
    assert (_state_of_b(world), counts(A)) == before


LISTS = {
    "exceptions": ("/api/exceptions/{A}", {}, "exception_id", ["a_exc"]),
    "exceptions-by-bs-type": ("/api/exceptions/{A}", {"exception_type": "bravo_type"}, "exception_id", []),
    "exceptions-by-bs-status": ("/api/exceptions/{A}", {"status": "received"}, "exception_id", ["a_exc"]),
    "tool-executions": ("/api/tools/executions", {}, "execution_id", ["a_exec"]),
    "tool-executions-of-bs-exception": ("/api/tools/executions", {"exception_id": "{b_exc}"}, "execution_id", []),
    "tool-executions-by-tool": ("/api/tools/executions", {"tool": TOOL}, "execution_id", ["a_exec"]),
    "dead-letters": ("/api/dead-letters", {}, "id", ["a_dl"]),
    "dead-letters-open": ("/api/dead-letters", {"status": "open"}, "id", ["a_dl"]),
}


@pytest.mark.parametrize("name", LISTS)
def test_lists_for_a_never_include_bs_rows(world, name):
    path, params, key, expected = LISTS[name]
    response = world.a.api.get(world.fill(path), world.fill(params))
    assert response.status_code == 200, response.content
    body = response.json()
    assert [str(r[key]) for r in body["results"]] == [world.ids[e] for e in expected]
    assert body["next"] is None
    assert all(r.get("tenant_id") == A for r in body["results"])
    _assert_nothing_of_b(world, response)


def test_a_full_walk_of_as_pages_never_meets_b(world):
    for i in range(4):
        ingest(world.a, source_ref=f"MORE-{i}")
        ingest(world.b, source_ref=f"MORE-{i}")
    seen, url = [], f"/api/exceptions/{A}?limit=2"
    while url:
        response = world.a.api.get(url)
        assert response.status_code == 200
        _assert_nothing_of_b(world, response)
        seen += [r["exception_id"] for r in response.json()["results"]]
        url = response.json()["next"]
        url = url and url.removeprefix("http://testserver")
    assert len(seen) == len(set(seen)) == 5


# --- the operator key (of tenant A) ---------------------------------------------------------


def test_the_operator_reads_bs_exception_and_lists_bs_rows(world):
    api = world.operator.api
    detail = api.get(f"/api/exceptions/{B}/{world.ids['b_exc']}")
    assert detail.status_code == 200
    assert (detail.json()["tenant_id"], detail.json()["source_ref"]) == (B, "BRAVO-REF")
    assert detail.json()["events"][0]["event_id"] == world.ids["b_event"]

    listing = api.get(f"/api/exceptions/{B}")
    assert [r["exception_id"] for r in listing.json()["results"]] == [world.ids["b_exc"]]

    view = api.get(f"/api/exceptions/{B}/{world.ids['b_exc']}/playbook")
    assert view.status_code == 200 and view.json()["status"] == "awaiting_approval"

    assert api.get(f"/api/playbooks/{world.ids['b_pb']}").json()["name"] == "bravo-playbook"
    execution = api.get(f"/api/tools/executions/{world.ids['b_exec']}")
    assert execution.status_code == 200 and execution.json()["tenant_id"] == B

    executions = api.get("/api/tools/executions").json()["results"]
    assert {r["execution_id"] for r in executions} == {world.ids["a_exec"], world.ids["b_exec"]}
    letters = api.get("/api/dead-letters").json()["results"]
    assert {str(r["id"]) for r in letters} == {world.ids["a_dl"], world.ids["b_dl"]}


def test_the_operator_sees_bs_exception_only_under_bs_path(world):
    response = world.operator.api.get(f"/api/exceptions/{A}/{world.ids['b_exc']}")
    assert_problem(response, 404, "not-found")
    listing = world.operator.api.get(f"/api/exceptions/{A}").json()["results"]
    assert [r["exception_id"] for r in listing] == [world.ids["a_exc"]]


def test_the_operator_replays_bs_dead_letter(world):
    response = world.operator.api.post(f"/api/dead-letters/{world.ids['b_dl']}/replay")
    assert response.status_code == 202, response.content
    assert json.loads(response.content)["status"] == "replayed"
    with all_tenants_scope():
        assert DeadLetter.objects.get(pk=world.ids["b_dl"]).status == "replayed"


# Every write addressed at B, by path or by B's exception's id.
WRITES_FOR_B = {
    **{k: v for k, v in TENANT_PATH_ENDPOINTS.items() if v[0] == "POST"},
    "tool-execute": ("POST", "/api/tools/execute", {"exception_id": "{b_exc}", "tool": TOOL}),
}


@pytest.mark.parametrize("name", WRITES_FOR_B)
def test_an_operator_key_with_every_scope_never_writes_for_another_tenant(world, name):
    operator = key_of(A, scopes=("ingest", "read", "approve", "operate"), name="ops-desk")
    method, path, body = WRITES_FOR_B[name]
    before = _state_of_b(world), counts(A)
    response = _call(operator.api, method, world.fill(path), world.fill(body))
    problem = assert_problem(response, 403, "forbidden")
    assert "never writes for another" in problem["detail"]
    assert (_state_of_b(world), counts(A)) == before


def test_an_operator_key_with_every_scope_still_writes_for_its_own_tenant(world):
    operator = key_of(A, scopes=("ingest", "read", "approve", "operate"), name="ops-desk")
    response = operator.api.post(f"/api/exceptions/{A}", INGEST)
    assert response.status_code == 202, response.content


# --- scopes ---------------------------------------------------------------------------------

# (method, path, body) on A's own rows, and the scope each needs.
SCOPED = {
    "ingest": ("POST", "/api/exceptions/{A}", INGEST, "ingest"),
    "batch": ("POST", "/api/exceptions/{A}/batch", {"items": [INGEST]}, "ingest"),
    "manual": ("POST", "/api/exceptions/{A}/manual", {"exception_type": "fraud_alert"}, "ingest"),
    "list": ("GET", "/api/exceptions/{A}", None, "read"),
    "detail": ("GET", "/api/exceptions/{A}/{a_exc}", None, "read"),
    "trace": ("GET", "/api/exceptions/{A}/{a_exc}/trace", None, "read"),
    "playbook-view": ("GET", "/api/exceptions/{A}/{a_exc}/playbook", None, "read"),
    "playbook": ("GET", "/api/playbooks/{a_pb}", None, "read"),
    "tool-executions": ("GET", "/api/tools/executions", None, "read"),
    "tool-execution": ("GET", "/api/tools/executions/{a_exec}", None, "read"),
    "dead-letters": ("GET", "/api/dead-letters", None, "read"),
    "recalculate": ("POST", "/api/exceptions/{A}/{a_exc}/playbook/recalculate", {}, "approve"),
    "approve": ("POST", "/api/exceptions/{A}/{a_exc}/approve", {"decision": "approve"}, "approve"),
    "feedback": ("POST", "/api/exceptions/{A}/{a_exc}/feedback", {"rating": 1}, "approve"),
    "tool-execute": ("POST", "/api/tools/execute", {"exception_id": "{a_exc}", "tool": TOOL}, "approve"),
    "dead-letter-replay": ("POST", "/api/dead-letters/{a_dl}/replay", None, "operate"),
}
EVERY_SCOPE = ("ingest", "read", "approve", "operate")


@pytest.mark.parametrize("name", SCOPED)
def test_a_key_without_the_scope_an_endpoint_needs_is_403_naming_it_and_changes_nothing(world, name):
    method, path, body, needed = SCOPED[name]
    party = key_of(A, scopes=[s for s in EVERY_SCOPE if s != needed])
    before = counts(A), _state_of_b(world)
    problem = assert_problem(_call(party.api, method, world.fill(path), world.fill(body)), 403, "forbidden")
    assert problem["missing_scope"] == needed
    assert repr(needed) in problem["detail"]
    assert (counts(A), _state_of_b(world)) == before


@pytest.mark.parametrize("name", SCOPED)
def test_a_key_with_only_the_scope_an_endpoint_needs_passes_the_scope_check(world, name):
    method, path, body, needed = SCOPED[name]
    party = key_of(A, scopes=[needed])
    response = _call(party.api, method, world.fill(path), world.fill(body))
    assert response.status_code in (200, 202), response.content


def test_an_ingest_key_cannot_read_and_a_read_key_cannot_ingest(world):
    ingest_only, read_only = key_of(A, scopes=["ingest"]), key_of(A, scopes=["read"])
    assert ingest_only.api.post(f"/api/exceptions/{A}", INGEST).status_code == 202
    assert assert_problem(ingest_only.api.get(f"/api/exceptions/{A}"), 403)["missing_scope"] == "read"
    assert read_only.api.get(f"/api/exceptions/{A}").status_code == 200
    assert assert_problem(read_only.api.post(f"/api/exceptions/{A}", INGEST), 403)["missing_scope"] == "ingest"


# --- actors -----------------------------------------------------------------------------------


def test_every_human_action_records_the_keys_name_as_its_actor_and_the_trace_shows_it(world):
    approver = key_of(A, scopes=["approve", "read"], name="ops-desk:approver-1")
    clerk = key_of(A, scopes=["ingest"], name="claims-clerk")
    exception_id = world.ids["a_exc"]
    actions = {
        "ApprovalDecided": ("approve", {"decision": "approve", "comment": "ok"}),
        "FeedbackSubmitted": ("feedback", {"rating": 5}),
        "PlaybookRecalculationRequested": ("playbook/recalculate", {"reason": "new rules"}),
    }
    for suffix, body in actions.values():
        response = approver.api.post(f"/api/exceptions/{A}/{exception_id}/{suffix}", body)
        assert response.status_code == 202, response.content
    run = approver.api.post("/api/tools/execute", {"exception_id": exception_id, "tool": TOOL})
    assert run.status_code == 202, run.content
    manual = clerk.api.post(f"/api/exceptions/{A}/manual", {"exception_type": "fraud_alert"})
    assert manual.status_code == 202, manual.content

    recorded = {e.event_type: e.payload for e in events_of(exception_id)}
    for event_type in actions:
        assert recorded[event_type]["actor"] == "ops-desk:approver-1", event_type
    assert recorded["ApprovalDecided"]["decided_by"].startswith("key:")
    requested = [
        e.payload for e in events_of(exception_id)
        if e.event_type == "ToolExecutionRequested" and e.payload["execution_id"] == run.json()["execution_id"]
    ]  # fmt: skip
    assert [p["actor"] for p in requested] == ["ops-desk:approver-1"]
    (created,) = events_of(manual.json()["exception_id"])
    assert created.payload["actor"] == "claims-clerk"

    spans = approver.api.get(f"/api/exceptions/{A}/{exception_id}/trace").json()["spans"]
    actors = {s["event_type"]: s["actor"] for s in spans if s["actor"]}
    assert actors == {**dict.fromkeys(actions, "ops-desk:approver-1"), "ToolExecutionRequested": "ops-desk:approver-1"}
    assert next(s for s in spans if s["event_type"] == "ExceptionIngested")["actor"] is None
