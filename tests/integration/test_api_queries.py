"""The query API over HTTP: exception lists (filters, keyset cursors), an exception with its events,
playbooks, tool executions and dead letters."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing

from exceptions_app.models import ExceptionRecord
from sentinai.api import pagination
from sentinai.models import DeadLetter
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.api import (
    TOOL,
    assert_problem,
    await_approval,
    ingest,
    ingest_body,
    make_dead_letter,
    make_playbook,
    make_tool,
    operator_of,
    tenant_with_key,
)
from tools_app.models import ToolExecution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_caches")]

EXCEPTION_FIELDS = {
    "exception_id", "tenant_id", "source_system", "source_ref", "exception_type", "severity", "status",
    "payload", "normalized", "sla_due_at", "created_at", "updated_at",
}  # fmt: skip
EVENT_FIELDS = {"event_id", "event_type", "sequence", "causation_id", "producer", "recorded_at", "payload"}


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def walk(api, path: str, params: dict | None = None) -> list[list[dict]]:
    """Every page of a list, following `next`."""
    pages = []
    response = api.get(path, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next"}
        pages.append(body["results"])
        if body["next"] is None:
            return pages
        assert len(pages) < 100
        response = api.get(_path(body["next"]))


def _set(exception_id: str, **fields) -> None:
    with tenant_scope("acme"):
        assert ExceptionRecord.objects.filter(id=exception_id).update(**fields) == 1


def _created_at(exception_id: str):
    with tenant_scope("acme"):
        return ExceptionRecord.objects.values_list("created_at", flat=True).get(id=exception_id)


# --- exception lists ------------------------------------------------------------------------


def test_the_list_answers_the_tenants_exceptions_newest_first_in_the_documented_shape(acme):
    ids = [ingest(acme, source_ref=f"R-{i}") for i in range(3)]
    response = acme.api.get("/api/exceptions/acme")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["next"] is None
    assert [r["exception_id"] for r in body["results"]] == ids[::-1]
    first = body["results"][-1]
    assert set(first) >= EXCEPTION_FIELDS
    assert (first["tenant_id"], first["source_system"], first["source_ref"], first["exception_type"]) == (
        "acme", "core-banking", "R-0", "payment_failed",
    )  # fmt: skip
    assert (first["status"], first["severity"], first["normalized"]) == ("received", None, {})
    assert first["payload"] == {"amount": 125.5, "currency": "EUR"}


def test_the_page_postgresql_renders_is_the_page_the_api_rendered_from_rows(acme):
    """The list's rows are built as JSON by PostgreSQL; they must be what rendering the ORM's rows
    gave, timestamps to the character (UTC "Z", microseconds only when there are any)."""
    import orjson

    from exceptions_app import selectors
    from sentinai.api.renderers import OrjsonRenderer

    ids = [ingest(acme, source_ref=f"R-{i}") for i in range(4)]
    whole_second = _created_at(ids[1]).replace(microsecond=0)
    _set(ids[1], created_at=whole_second, occurred_at=whole_second - timedelta(days=400))
    _set(ids[2], closed_at=whole_second + timedelta(microseconds=7), severity="high", priority=3)
    _set(ids[3], payload={"nested": {"list": [1, 2.5, None, True, "x\u00e9"]}, "big": 2**62}, status="resolved")
    render = OrjsonRenderer().render
    with tenant_scope("acme"):
        _, second_page = selectors.exception_page(tenant_id="acme", filters={}, after=None, limit=1)
    # A cursor on a whole second: the row comparison must not skip or repeat the row at that instant.
    at_whole_second = {"c": whole_second.isoformat(), "i": ids[1]}
    cases = (
        ({}, None, 50),
        ({}, None, 2),
        ({"status": "resolved"}, None, 50),
        ({}, second_page, 2),
        ({}, at_whole_second, 50),
        ({"created_after": whole_second - timedelta(seconds=1)}, None, 50),
        ({"created_before": whole_second + timedelta(microseconds=1), "severity": "high"}, None, 50),
        ({"severity": "high", "exception_type": "payment_failed"}, second_page, 50),
    )
    for filters, position_in, limit in cases:
        after = selectors.parse_position(position_in) if position_in else None
        with tenant_scope("acme"):
            rows, position = selectors.exception_page(tenant_id="acme", filters=filters, after=after, limit=limit)
            fragment, fragment_position = selectors.exception_page_json(
                tenant_id="acme", filters=filters, after=after, limit=limit
            )
        # The same position, whichever way it is written (the PostgreSQL path reads it from the
        # rendered row: "Z" rather than "+00:00").
        if position is None:
            assert fragment_position is None, (filters, fragment_position)
        else:
            assert selectors.parse_position(fragment_position) == selectors.parse_position(position)
        if not rows:
            assert orjson.loads(render(fragment)) == [], filters
            continue
        assert orjson.loads(render({"results": fragment})) == orjson.loads(render({"results": rows}))
        documents = orjson.loads(render(fragment))
        assert len(documents) == min(limit, len(rows))
        for document, row in zip(documents, orjson.loads(render(rows)), strict=True):
            for name in ("occurred_at", "sla_due_at", "closed_at", "created_at", "updated_at"):
                assert document[name] == row[name], name
    listed = acme.api.get("/api/exceptions/acme").json()["results"]
    by_id = {r["exception_id"]: r for r in listed}
    assert by_id[ids[1]]["created_at"] == whole_second.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert by_id[ids[2]]["closed_at"] == (whole_second + timedelta(microseconds=7)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert by_id[ids[3]]["payload"] == {"nested": {"list": [1, 2.5, None, True, "x\u00e9"]}, "big": 2**62}


def test_the_list_the_detail_and_the_playbook_view_write_the_same_instant_the_same_way(acme):
    exception_id = ingest(acme)
    whole_second = _created_at(exception_id).replace(microsecond=0)
    _set(exception_id, created_at=whole_second, updated_at=whole_second + timedelta(microseconds=120))
    (listed,) = acme.api.get("/api/exceptions/acme").json()["results"]
    detail = acme.api.get(f"/api/exceptions/acme/{exception_id}").json()
    assert listed["created_at"] == detail["created_at"] == whole_second.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed["updated_at"] == detail["updated_at"] == whole_second.strftime("%Y-%m-%dT%H:%M:%S.000120Z")
    (event,) = detail["events"]
    assert event["recorded_at"].endswith("Z")
    recalc = acme.api.post(f"/api/exceptions/acme/{exception_id}/playbook/recalculate", {})
    assert recalc.status_code == 202
    events = acme.api.get(f"/api/exceptions/acme/{exception_id}/playbook").json()["events"]
    detail_events = {e["event_id"]: e for e in acme.api.get(f"/api/exceptions/acme/{exception_id}").json()["events"]}
    assert events and all(e["recorded_at"] == detail_events[e["event_id"]]["recorded_at"] for e in events)


def test_an_empty_list_is_200_with_no_results(acme):
    assert acme.api.get("/api/exceptions/acme").json() == {"results": [], "next": None}


def test_the_list_filters_by_status_severity_type_and_creation_time(acme):
    a = ingest(acme, exception_type="payment_failed")
    b = ingest(acme, exception_type="fx_mismatch")
    c = ingest(acme, exception_type="payment_failed")
    d = ingest(acme, exception_type="fx_mismatch")
    _set(a, status="triaged", severity="high")
    _set(b, status="triaged", severity="low")
    _set(c, status="resolved", severity="high")

    def ids(**params):
        response = acme.api.get("/api/exceptions/acme", params)
        assert response.status_code == 200, response.content
        return [r["exception_id"] for r in response.json()["results"]]

    assert ids(status="triaged") == [b, a]
    assert ids(status="received") == [d]
    assert ids(severity="high") == [c, a]
    assert ids(exception_type="fx_mismatch") == [d, b]
    assert ids(status="triaged", severity="high", exception_type="payment_failed") == [a]
    assert ids(status="escalated") == []
    assert ids(created_after=_created_at(b).isoformat()) == [d, c]
    assert ids(created_before=_created_at(c).isoformat()) == [b, a]
    assert ids(created_after=_created_at(a).isoformat(), created_before=_created_at(d).isoformat()) == [c, b]
    later = (_created_at(d) + timedelta(hours=1)).isoformat()
    assert ids(created_after=later) == []


@pytest.mark.parametrize(
    "params, field",
    [
        ({"status": "bogus"}, "status"),
        ({"severity": "extreme"}, "severity"),
        ({"created_after": "last tuesday"}, "created_after"),
        ({"created_before": "2025-13-45"}, "created_before"),
    ],
)
def test_an_invalid_filter_is_400(acme, params, field):
    problem = assert_problem(acme.api.get("/api/exceptions/acme", params), 400, "validation-error")
    assert field in problem["errors"]


def test_walking_next_returns_every_exception_exactly_once_newest_first(acme):
    singles = [ingest(acme, source_ref=f"S-{i}") for i in range(7)]
    batch = acme.api.post("/api/exceptions/acme/batch", {"items": [ingest_body(source_ref=f"B-{i}") for i in range(5)]})
    assert batch.status_code == 202
    batched = [r["exception_id"] for r in batch.json()["results"]]

    pages = walk(acme.api, "/api/exceptions/acme", {"limit": 5})
    assert [len(p) for p in pages] == [5, 5, 2]
    seen = [r["exception_id"] for page in pages for r in page]
    assert len(seen) == len(set(seen)) == 12
    assert set(seen) == set(singles) | set(batched)
    # The batch (one transaction, one creation time) is newest, then the singles in reverse order.
    assert set(seen[:5]) == set(batched)
    assert seen[5:] == singles[::-1]
    stamps = [_created_at(i) for i in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_next_keeps_the_filters_and_the_limit(acme):
    wanted = []
    for i in range(6):
        exception_id = ingest(acme, exception_type="fx_mismatch" if i % 2 else "payment_failed")
        if i % 2:
            wanted.append(exception_id)
    first = acme.api.get("/api/exceptions/acme", {"exception_type": "fx_mismatch", "limit": 2}).json()
    query = parse_qs(urlsplit(first["next"]).query)
    assert query["exception_type"] == ["fx_mismatch"] and query["limit"] == ["2"] and query["cursor"]
    pages = walk(acme.api, "/api/exceptions/acme", {"exception_type": "fx_mismatch", "limit": 2})
    assert [r["exception_id"] for page in pages for r in page] == wanted[::-1]


def test_a_page_exactly_at_the_limit_has_no_next(acme):
    for _ in range(3):
        ingest(acme)
    body = acme.api.get("/api/exceptions/acme", {"limit": 3}).json()
    assert len(body["results"]) == 3 and body["next"] is None


@pytest.mark.parametrize("path", ["/api/exceptions/acme", "/api/tools/executions", "/api/dead-letters"])
def test_a_forged_or_altered_cursor_is_400(acme, path):
    for _ in range(3):
        ingest(acme)
    first = acme.api.get("/api/exceptions/acme", {"limit": 1}).json()
    genuine = parse_qs(urlsplit(first["next"]).query)["cursor"][0]
    altered = genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB")
    forged = [
        "not-a-cursor",
        altered,
        "x" + genuine,
        signing.dumps({"c": "2030-01-01T00:00:00+00:00", "i": str(uuid.uuid4())}, salt="other"),
    ]
    for cursor in forged:
        problem = assert_problem(acme.api.get(path, {"cursor": cursor}), 400)
        assert problem["type"].endswith("/invalid-cursor"), problem


def test_a_signed_cursor_of_the_wrong_shape_is_400(acme):
    ingest(acme)
    for position in ({"i": 5}, {"c": "not a time", "i": "x"}, {"c": 1}):
        cursor = pagination.encode(position)
        assert_problem(acme.api.get("/api/exceptions/acme", {"cursor": cursor}), 400, "invalid-cursor")
        assert_problem(acme.api.get("/api/tools/executions", {"cursor": cursor}), 400, "invalid-cursor")
    assert_problem(acme.api.get("/api/dead-letters", {"cursor": pagination.encode({"i": "5"})}), 400, "invalid-cursor")


@pytest.mark.parametrize("path", ["/api/exceptions/acme", "/api/tools/executions", "/api/dead-letters"])
@pytest.mark.parametrize("limit", ["0", "-1", "201", "1000", "ten", "1.5"])
def test_a_limit_outside_1_to_200_is_400(acme, path, limit):
    problem = assert_problem(acme.api.get(path, {"limit": limit}), 400, "validation-error")
    assert "limit" in problem["errors"]


@pytest.mark.parametrize("path", ["/api/exceptions/acme", "/api/tools/executions", "/api/dead-letters"])
@pytest.mark.parametrize("limit", ["1", "200"])
def test_limits_1_and_200_are_accepted(acme, path, limit):
    assert acme.api.get(path, {"limit": limit}).status_code == 200


# --- one exception --------------------------------------------------------------------------


def test_an_exception_is_served_with_its_events_in_sequence_order(acme):
    exception_id = ingest(acme, source_ref="ONE-1")
    feedback = acme.api.post(f"/api/exceptions/acme/{exception_id}/feedback", {"rating": 5})
    recalculate = acme.api.post(f"/api/exceptions/acme/{exception_id}/playbook/recalculate", {"reason": "x"})
    assert feedback.status_code == recalculate.status_code == 202

    response = acme.api.get(f"/api/exceptions/acme/{exception_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= EXCEPTION_FIELDS
    assert (body["exception_id"], body["tenant_id"], body["source_ref"]) == (exception_id, "acme", "ONE-1")
    events = body["events"]
    assert all(set(e) == EVENT_FIELDS for e in events)
    assert [(e["event_type"], e["sequence"]) for e in events] == [
        ("ExceptionIngested", 1), ("FeedbackSubmitted", 2), ("PlaybookRecalculationRequested", 3),
    ]  # fmt: skip
    assert [e["event_id"] for e in events[1:]] == [feedback.json()["event_id"], recalculate.json()["event_id"]]
    assert all(e["producer"] == "api" for e in events)
    assert events[0]["payload"]["source_ref"] == "ONE-1"
    assert events[1]["payload"]["rating"] == 5


def test_an_unknown_exception_is_404(acme):
    for path in (f"/api/exceptions/acme/{uuid.uuid4()}", f"/api/exceptions/acme/{uuid.uuid4()}/playbook"):
        assert_problem(acme.api.get(path), 404, "not-found")


def test_a_path_that_is_no_endpoint_is_a_404_problem(acme):
    assert_problem(acme.api.get("/api/exceptions/acme/not-a-uuid"), 404)
    assert_problem(acme.api.get("/api/nothing-here"), 404)


# --- playbooks ------------------------------------------------------------------------------


def test_the_playbook_view_of_an_exception_without_a_run(acme):
    exception_id = ingest(acme)
    body = acme.api.get(f"/api/exceptions/acme/{exception_id}/playbook").json()
    assert body == {"run_id": None, "playbook": None, "status": "none", "steps": [], "events": []}


def test_the_playbook_view_of_an_exception_shows_its_run_and_playbook_events(acme):
    exception_id = ingest(acme)
    playbook = make_playbook("acme")
    run = await_approval("acme", exception_id, playbook, position=2)
    recalc = acme.api.post(f"/api/exceptions/acme/{exception_id}/playbook/recalculate", {})
    assert recalc.status_code == 202

    response = acme.api.get(f"/api/exceptions/acme/{exception_id}/playbook")
    assert response.status_code == 200
    body = response.json()
    assert body["run_id"] == str(run.id)
    assert body["playbook"] == {"id": str(playbook.id), "name": "retry-payment", "version": 1}
    assert (body["status"], body["current_position"]) == ("awaiting_approval", 2)
    # Only the events that concern playbooks.
    assert [e["event_type"] for e in body["events"]] == ["PlaybookRecalculationRequested"]
    assert body["events"][0]["event_id"] == recalc.json()["event_id"]


def test_the_playbook_document_postgresql_builds_is_the_view_the_api_rendered(acme):
    """The playbook view is one statement building its JSON; it must be what rendering the ORM's
    view gave: the run, its playbook, its steps in order and the playbook events, timestamps to the
    character."""
    import orjson

    from playbooks_app import selectors
    from playbooks_app.models import PlaybookRunStep
    from sentinai.api.renderers import OrjsonRenderer

    exception_id = ingest(acme)
    playbook = make_playbook("acme")
    run = await_approval("acme", exception_id, playbook, position=2)
    started = _created_at(exception_id).replace(microsecond=0)
    with tenant_scope("acme"):
        for position, (status, output, finished) in enumerate(
            [("succeeded", {"ok": True, "n": 1.5}, started + timedelta(seconds=1, microseconds=30)),
             ("awaiting_approval", {}, None)],
            start=1,
        ):  # fmt: skip
            PlaybookRunStep.objects.create(
                run=run, tenant_id="acme", position=position, name=f"step-{position}", action="tool",
                status=status, tool_execution_id=uuid.uuid4() if position == 1 else None, output=output,
                started_at=started, finished_at=finished,
            )  # fmt: skip
    acme.api.post(f"/api/exceptions/acme/{exception_id}/playbook/recalculate", {"reason": "again"})
    render = OrjsonRenderer().render
    with tenant_scope("acme"):
        document = selectors.exception_playbook_view_json(tenant_id="acme", exception_id=exception_id)
        view = selectors.exception_playbook_view(tenant_id="acme", exception_id=exception_id)
        assert selectors.exception_playbook_view_json(tenant_id="acme", exception_id=str(uuid.uuid4())) is None
    assert isinstance(document, bytes)
    assert orjson.loads(document) == orjson.loads(render(view))
    assert list(orjson.loads(document)) == list(view), "the same keys in the same order"
    body = acme.api.get(f"/api/exceptions/acme/{exception_id}/playbook").json()
    assert [s["position"] for s in body["steps"]] == [1, 2]
    assert body["steps"][0]["started_at"] == started.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["steps"][0]["finished_at"] == (started + timedelta(seconds=1, microseconds=30)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    assert [e["event_type"] for e in body["events"]] == ["PlaybookRecalculationRequested"]


def test_a_playbook_is_served_with_its_steps_in_order(acme):
    playbook = make_playbook("acme", steps=3)
    response = acme.api.get(f"/api/playbooks/{playbook.id}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["tenant_id"], body["name"], body["version"], body["pack"]) == (
        str(playbook.id), "acme", "retry-payment", 1, "finance",
    )  # fmt: skip
    assert body["match"] == {"exception_type": "payment_failed"}
    assert [s["position"] for s in body["steps"]] == [1, 2, 3]
    assert [s["action"] for s in body["steps"]] == ["tool", "approval", "resolve"]
    assert body["steps"][0]["tool"] == TOOL and body["steps"][0]["params"] == {"n": 1}
    assert_problem(acme.api.get(f"/api/playbooks/{uuid.uuid4()}"), 404, "not-found")


# --- tool executions ------------------------------------------------------------------------


def _execute(party, exception_id: str, tool: str = TOOL) -> str:
    response = party.api.post("/api/tools/execute", {"exception_id": exception_id, "tool": tool})
    assert response.status_code == 202, response.content
    return response.json()["execution_id"]


def test_tool_executions_list_filters_and_pages(acme):
    make_tool("acme")
    make_tool("acme", name="notify_ops")
    first, second = ingest(acme), ingest(acme)
    executions = [
        _execute(acme, first),
        _execute(acme, first, "notify_ops"),
        _execute(acme, second),
        _execute(acme, second, "notify_ops"),
        _execute(acme, second),
    ]
    with tenant_scope("acme"):
        ToolExecution.objects.filter(id=executions[2]).update(status="succeeded", attempts=1)

    def ids(**params):
        response = acme.api.get("/api/tools/executions", params)
        assert response.status_code == 200, response.content
        return [r["execution_id"] for r in response.json()["results"]]

    assert ids() == executions[::-1]
    assert ids(exception_id=first) == [executions[1], executions[0]]
    assert ids(tool="notify_ops") == [executions[3], executions[1]]
    assert ids(status="succeeded") == [executions[2]]
    assert ids(status="requested", tool=TOOL, exception_id=second) == [executions[4]]
    assert ids(exception_id=str(uuid.uuid4())) == []

    pages = walk(acme.api, "/api/tools/executions", {"limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r["execution_id"] for page in pages for r in page] == executions[::-1]

    problem = assert_problem(acme.api.get("/api/tools/executions", {"status": "exploded"}), 400)
    assert "status" in problem["errors"]
    problem = assert_problem(acme.api.get("/api/tools/executions", {"exception_id": "nope"}), 400)
    assert "exception_id" in problem["errors"]


def test_a_tool_execution_is_served_by_id(acme):
    make_tool("acme")
    exception_id = ingest(acme)
    execution_id = _execute(acme, exception_id)
    response = acme.api.get(f"/api/tools/executions/{execution_id}")
    assert response.status_code == 200
    body = response.json()
    assert (body["execution_id"], body["exception_id"], body["tool"], body["status"], body["tenant_id"]) == (
        execution_id, exception_id, TOOL, "requested", "acme",
    )  # fmt: skip
    assert body["request"] == {"params": {}} and body["attempts"] == 0
    assert body["requested_by"] == f"key:{acme.key.split('.')[0]}"
    assert_problem(acme.api.get(f"/api/tools/executions/{uuid.uuid4()}"), 404, "not-found")


# --- dead letters ---------------------------------------------------------------------------


def test_a_tenant_lists_its_own_dead_letters_and_an_operator_lists_all(acme):
    tenant_with_key("globex")
    operator = operator_of("acme")
    mine = [make_dead_letter("acme", event_id=str(uuid.uuid4()), consumer=c) for c in ("intake", "triage", "intake")]
    theirs = make_dead_letter("globex", event_id=str(uuid.uuid4()))
    orphan = make_dead_letter(None, source="broker", consumer="policy", message_id="m-1", body="garbage")
    with all_tenants_scope():
        DeadLetter.objects.filter(pk=mine[1].pk).update(status="replayed")

    body = acme.api.get("/api/dead-letters").json()
    assert [r["id"] for r in body["results"]] == [mine[2].pk, mine[1].pk, mine[0].pk]
    assert body["next"] is None
    row = body["results"][-1]
    assert (row["tenant_id"], row["agent"], row["source"], row["status"], row["attempts"]) == (
        "acme", "intake", "handler", "open", 5,
    )  # fmt: skip
    assert row["event_ids"] == [str(mine[0].event_id)] and row["error"] == "RuntimeError: boom"

    def ids(api, **params):
        response = api.get("/api/dead-letters", params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids(acme.api, status="open") == [mine[2].pk, mine[0].pk]
    assert ids(acme.api, agent="triage") == [mine[1].pk]
    everything = [orphan.pk, theirs.pk, mine[2].pk, mine[1].pk, mine[0].pk]
    assert ids(operator.api) == everything
    pages = walk(operator.api, "/api/dead-letters", {"limit": 2})
    assert [r["id"] for page in pages for r in page] == everything
    assert_problem(acme.api.get("/api/dead-letters", {"status": "lost"}), 400, "validation-error")
