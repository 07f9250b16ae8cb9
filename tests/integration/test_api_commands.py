"""The command API over HTTP: authentication, ingestion (single, batch, manual), deduplication, bad
input, commands on an exception, tool executions, dead-letter replay and PII redaction."""

from __future__ import annotations

import json
import threading
import uuid

import orjson
import pytest
from django.db import connection

from exceptions_app.models import ExceptionRecord
from sentinai.models import DeadLetter, ExceptionEvent, TenantAPIKey
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.api import (
    TOOL,
    Api,
    admission,
    assert_problem,
    await_approval,
    counts,
    events_of,
    exception_row,
    forget_caches,
    ingest,
    ingest_body,
    make_dead_letter,
    make_playbook,
    make_tool,
    operator_of,
    outbox_rows,
    tenant_with_key,
)
from tests.support.factories import make_tenant
from tools_app.models import Tool, ToolExecution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_caches")]

NOTHING = {"exceptions": 0, "events": 0, "outbox": 0, "tool_executions": 0, "dead_letters": 0}


# --- authentication -------------------------------------------------------------------------


def test_a_request_without_a_key_is_401_with_www_authenticate(acme):
    response = Api(None).post("/api/exceptions/acme", ingest_body())
    body = assert_problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "exception_id" not in body
    assert counts() == NOTHING


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer nodotinthiskey",
        "Bearer abc.def ghi",
        "Token abcdefgh.ijklmnop",
        "Bearer " + "a." + "x" * 300,
    ],
)
def test_a_malformed_authorization_header_is_401(acme, header):
    response = Api(None).post("/api/exceptions/acme", ingest_body(), headers={"Authorization": header})
    assert_problem(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="sentinai"'
    assert counts() == NOTHING


def test_an_unknown_key_is_401(acme):
    prefix = acme.key.split(".")[0]
    for key in ("abcdefgh.0123456789abcdef0123456789abcdef", f"{prefix}.not-the-secret"):
        response = Api(key).get("/api/exceptions/acme")
        assert_problem(response, 401, "unauthenticated")
        assert "WWW-Authenticate" in response
    assert Api(acme.key).get("/api/exceptions/acme").status_code == 200


def test_a_revoked_key_is_401(acme):
    assert acme.api.get("/api/exceptions/acme").status_code == 200
    TenantAPIKey.objects.filter(tenant_id="acme").update(revoked=True)
    forget_caches()
    assert_problem(acme.api.get("/api/exceptions/acme"), 401, "unauthenticated")
    assert_problem(acme.api.post("/api/exceptions/acme", ingest_body()), 401)
    assert counts() == NOTHING


# --- ingestion ------------------------------------------------------------------------------


def test_ingest_answers_202_and_stores_the_exception_its_first_event_and_an_outbox_row(acme):
    body = ingest_body(source_ref="INV-1001", payload={"amount": 10, "lines": [{"sku": "A"}]})
    response = acme.api.post("/api/exceptions/acme", body)

    assert response.status_code == 202, response.content
    answer = response.json()
    assert set(answer) == {"exception_id", "event_id", "status_url", "deduplicated"}
    assert answer["deduplicated"] is False
    exception_id, event_id = answer["exception_id"], answer["event_id"]
    assert answer["status_url"] == f"http://testserver/api/exceptions/acme/{exception_id}"
    assert response["Location"] == answer["status_url"]

    row = exception_row(exception_id)
    assert (row.tenant_id, row.source_system, row.source_ref, row.exception_type) == (
        "acme", "core-banking", "INV-1001", "payment_failed",
    )  # fmt: skip
    assert row.payload == {"amount": 10, "lines": [{"sku": "A"}]}
    assert row.status == "received" and row.manual is False
    assert row.occurred_at.isoformat() == "2025-01-02T03:04:05+00:00"

    (event,) = events_of(exception_id)
    assert str(event.event_id) == event_id
    assert (event.event_type, event.sequence, event.producer, event.tenant_id) == (
        "ExceptionIngested", 1, "api", "acme",
    )  # fmt: skip
    assert event.payload["source_ref"] == "INV-1001"
    assert event.payload["payload"] == {"amount": 10, "lines": [{"sku": "A"}]}

    (outbox,) = outbox_rows("acme")
    assert outbox.queue == "intake" and outbox.event_ids == [event_id]
    assert counts() == {**NOTHING, "exceptions": 1, "events": 1, "outbox": 1}

    status = acme.api.get(answer["status_url"].removeprefix("http://testserver"))
    assert status.status_code == 200 and status.json()["exception_id"] == exception_id


def test_the_same_source_ref_again_answers_200_with_the_same_exception_and_starts_nothing(acme):
    first = acme.api.post("/api/exceptions/acme", ingest_body(source_ref="INV-7"))
    assert first.status_code == 202
    before = counts()
    again = acme.api.post("/api/exceptions/acme", ingest_body(source_ref="INV-7", payload={"other": True}))

    assert again.status_code == 200, again.content
    assert again.json()["exception_id"] == first.json()["exception_id"]
    assert again.json()["deduplicated"] is True
    assert again["Location"] == first["Location"]
    assert counts() == before == {**NOTHING, "exceptions": 1, "events": 1, "outbox": 1}
    assert exception_row(first.json()["exception_id"]).payload == {"amount": 125.5, "currency": "EUR"}


def test_the_same_source_ref_from_another_source_system_is_a_new_exception(acme):
    first = ingest(acme, source_ref="INV-8", source_system="erp")
    second = ingest(acme, source_ref="INV-8", source_system="crm")
    assert first != second
    assert counts()["exceptions"] == 2


def test_the_same_idempotency_key_answers_200_with_the_same_exception(acme):
    headers = {"Idempotency-Key": "retry-0001"}
    first = acme.api.post("/api/exceptions/acme", ingest_body(source_ref=None), headers=headers)
    assert first.status_code == 202
    before = counts()
    again = acme.api.post("/api/exceptions/acme", ingest_body(source_ref="other-ref"), headers=headers)
    assert again.status_code == 200, again.content
    assert again.json()["exception_id"] == first.json()["exception_id"]
    assert again.json()["deduplicated"] is True
    assert counts() == before
    # Without a key or a source_ref, every report is a new exception.
    third = acme.api.post("/api/exceptions/acme", ingest_body(source_ref=None))
    assert third.status_code == 202 and third.json()["exception_id"] != first.json()["exception_id"]


@pytest.mark.parametrize("key", ["", " ", "x" * 201, "bad\x01key"])
def test_an_invalid_idempotency_key_is_400(acme, key):
    response = acme.api.post("/api/exceptions/acme", ingest_body(), headers={"Idempotency-Key": key})
    body = assert_problem(response, 400, "validation-error")
    assert "Idempotency-Key" in body["errors"]
    assert counts() == NOTHING


@pytest.mark.parametrize("by", ["source_ref", "idempotency_key"])
def test_concurrent_duplicates_create_one_exception_and_one_event(acme, by):
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def post():
        try:
            api = Api(acme.key)
            barrier.wait(timeout=10)
            if by == "source_ref":
                response = api.post("/api/exceptions/acme", ingest_body(source_ref="RACE-1"))
            else:
                body = ingest_body(source_ref=f"RACE-{uuid.uuid4()}")
                response = api.post("/api/exceptions/acme", body, headers={"Idempotency-Key": "race-key"})
            with lock:
                results.append((response.status_code, response.json()))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (threads_count - 1) + [202], results
    assert len({body["exception_id"] for _, body in results}) == 1
    assert sorted(body["deduplicated"] for _, body in results) == [False] + [True] * (threads_count - 1)
    assert counts() == {**NOTHING, "exceptions": 1, "events": 1, "outbox": 1}
    # Duplicates hand their in-flight room back: one exception is in flight.
    assert admission.backend().in_flight("acme") == 1


# --- bad input changes nothing --------------------------------------------------------------

BAD_BODIES = {
    "payload is a list": (ingest_body(payload=[1, 2]), "payload"),
    "payload is a string": (ingest_body(payload='{"a": 1}'), "payload"),
    "payload is null": (ingest_body(payload=None), "payload"),
    "payload missing": (ingest_body(payload=...), "payload"),
    "source_system missing": (ingest_body(source_system=...), "source_system"),
    "source_system empty": (ingest_body(source_system=""), "source_system"),
    "source_system too long": (ingest_body(source_system="s" * 101), "source_system"),
    "source_system is a number": (ingest_body(source_system=123), "source_system"),
    "source_system is a boolean": (ingest_body(source_system=True), "source_system"),
    "source_system is a list": (ingest_body(source_system=["erp"]), "source_system"),
    "source_system is an object": (ingest_body(source_system={"name": "erp"}), "source_system"),
    "source_ref is a number": (ingest_body(source_ref=42), "source_ref"),
    "exception_type not a type name": (ingest_body(exception_type="not a type!"), "exception_type"),
    "occurred_at not a time": (ingest_body(occurred_at="yesterday"), "occurred_at"),
    "unknown field": (ingest_body(sourcesystem="typo"), "sourcesystem"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_invalid_fields_are_400_with_errors_per_field_and_change_nothing(acme, case):
    body, field = BAD_BODIES[case]
    response = acme.api.post("/api/exceptions/acme", body)
    problem = assert_problem(response, 400, "validation-error")
    assert field in problem["errors"], problem
    assert isinstance(problem["errors"][field], list) and problem["errors"][field]
    assert counts() == NOTHING


@pytest.mark.parametrize(
    "payload",
    [
        '{"big": 123456789012345678901234567890}',
        '{"note": "a\\u0000b"}',
        '{"note": "\\ud800"}',
    ],
    ids=["int-beyond-64-bits", "nul-character", "lone-surrogate"],
)
def test_a_payload_that_cannot_be_stored_is_400_not_500_and_changes_nothing(acme, payload):
    """Valid JSON the store cannot hold (jsonb has no NUL, orjson no big ints or lone surrogates) is
    bad input: a clear 400 on the payload, not an internal error."""
    raw = '{"source_system": "erp", "source_ref": "R-1", "payload": ' + payload + "}"
    json.loads(raw)  # valid JSON
    response = acme.api.post("/api/exceptions/acme", raw=raw)
    problem = assert_problem(response, 400, "validation-error")
    assert "payload" in problem["errors"]
    assert counts() == NOTHING
    assert admission.backend().in_flight("acme") == 0


@pytest.mark.parametrize(
    "raw",
    ['{"source_system": "erp", "payload": {', "not json at all", '{"a": NaN}', b"\xff\xfe{}"],
    ids=["truncated", "text", "nan", "not-utf8"],
)
def test_malformed_json_is_400_and_changes_nothing(acme, raw):
    response = acme.api.post("/api/exceptions/acme", raw=raw)
    assert_problem(response, 400)
    assert counts() == NOTHING


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null"])
def test_a_body_that_is_not_an_object_is_400(acme, raw):
    response = acme.api.post("/api/exceptions/acme", raw=raw)
    assert_problem(response, 400)
    assert counts() == NOTHING


def test_a_payload_of_exactly_256_kib_is_accepted_and_one_byte_more_is_400(acme):
    limit = 256 * 1024
    filler = limit - len(orjson.dumps({"blob": ""}))
    at_limit = {"blob": "a" * filler}
    assert len(orjson.dumps(at_limit)) == limit
    ok = acme.api.post("/api/exceptions/acme", ingest_body(payload=at_limit))
    assert ok.status_code == 202, ok.content[:500]

    before = counts()
    over = acme.api.post("/api/exceptions/acme", ingest_body(payload={"blob": "a" * (filler + 1)}))
    problem = assert_problem(over, 400, "validation-error")
    assert set(problem["errors"]) == {"payload"}
    assert counts() == before


@pytest.mark.parametrize("path", ["/api/exceptions/acme", "/api/exceptions/acme/batch"])
def test_a_request_body_over_16_mib_is_413_and_changes_nothing(acme, path):
    item = '{"source_system": "erp", "payload": {"blob": "' + "a" * (16 * 1024 * 1024) + '"}}'
    raw = item if path.endswith("/acme") else '{"items": [' + item + "]}"
    response = acme.api.post(path, raw=raw)
    assert_problem(response, 413, "payload-too-large")
    assert counts() == NOTHING


def test_a_body_that_is_not_json_is_415(acme):
    response = acme.api.client.post(
        "/api/exceptions/acme",
        data={"source_system": "erp", "payload": "{}"},
        HTTP_AUTHORIZATION=f"Bearer {acme.key}",
    )
    assert_problem(response, 415, "unsupported-media-type")
    assert counts() == NOTHING


@pytest.mark.parametrize("path", ["/api/exceptions/acme/batch", "/api/exceptions/acme/manual"])
def test_malformed_json_on_batch_and_manual_is_400(acme, path):
    assert_problem(acme.api.post(path, raw='{"items": ['), 400, "malformed-request")
    assert counts() == NOTHING


def test_an_unknown_tenant_is_404_for_an_operator_reading_and_403_for_any_write_elsewhere(acme):
    operator = operator_of("ops")
    assert_problem(operator.api.get("/api/exceptions/nobody"), 404, "not-found")
    # An operator never writes for another tenant, existing or not.
    assert_problem(operator.api.post("/api/exceptions/nobody", ingest_body()), 403, "forbidden")
    assert_problem(acme.api.post("/api/exceptions/nobody", ingest_body()), 403, "forbidden")
    assert_problem(acme.api.post("/api/exceptions/nobody/batch", {"items": [ingest_body()]}), 403)
    assert counts() == NOTHING


def test_a_tenant_key_on_another_tenants_path_is_403_and_changes_nothing(acme):
    tenant_with_key("globex")
    for path, body in (
        ("/api/exceptions/globex", ingest_body()),
        ("/api/exceptions/globex/batch", {"items": [ingest_body()]}),
        ("/api/exceptions/globex/manual", {"exception_type": "fraud_alert"}),
    ):
        assert_problem(acme.api.post(path, body), 403, "forbidden")
    assert counts() == NOTHING


def test_an_inactive_tenant_is_404(acme):
    make_tenant("acme", is_active=False)
    forget_caches()
    assert_problem(acme.api.post("/api/exceptions/acme", ingest_body()), 404, "not-found")
    assert counts() == NOTHING


# --- batch ----------------------------------------------------------------------------------


def test_a_batch_answers_one_result_per_item_and_bad_items_never_reject_good_ones(acme):
    existing = ingest(acme, source_ref="OLD-1")
    before = counts()
    items = [
        ingest_body(source_ref="B-1"),
        ingest_body(payload=...),  # rejected: no payload
        "not an object",  # rejected
        ingest_body(source_ref="OLD-1"),  # deduplicated: stored earlier
        ingest_body(source_ref="B-2", unknown_field=1),  # rejected
        ingest_body(source_ref="B-1"),  # deduplicated: earlier in this batch
        ingest_body(source_ref="B-3", payload={"n": 3}),
        ingest_body(source_system=["erp"], source_ref="B-4"),  # rejected: source_system not a string
    ]
    response = acme.api.post("/api/exceptions/acme/batch", {"items": items})

    assert response.status_code == 202, response.content
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [
        "accepted", "rejected", "rejected", "deduplicated", "rejected", "deduplicated", "accepted", "rejected",
    ]  # fmt: skip
    assert (body["accepted"], body["deduplicated"], body["rejected"]) == (2, 2, 4)
    # One serializer validates every item: an item's errors are its own, whatever came before it.
    assert results[1]["errors"] == {"payload": ["This field is required."]}
    assert results[2]["errors"] == {"non_field_errors": ["Must be an object."]}
    assert results[4]["errors"] == {"unknown_field": ["Unknown field."]}
    assert results[7]["errors"] == {"source_system": ["Not a valid string."]}
    for rejected in (results[1], results[2], results[4], results[7]):
        assert "exception_id" not in rejected
    assert results[3]["exception_id"] == existing
    assert results[5]["exception_id"] == results[0]["exception_id"]
    for accepted in (results[0], results[6]):
        assert accepted["status_url"] == f"http://testserver/api/exceptions/acme/{accepted['exception_id']}"
        (event,) = events_of(accepted["exception_id"])
        assert str(event.event_id) == accepted["event_id"] and event.event_type == "ExceptionIngested"
    assert exception_row(results[6]["exception_id"]).payload == {"n": 3}
    with all_tenants_scope():
        assert not ExceptionRecord.objects.filter(source_ref__in=["B-2", "B-4"]).exists()

    after = counts()
    assert after["exceptions"] == before["exceptions"] + 2
    assert after["events"] == before["events"] + 2
    # Only the two new exceptions are in flight (plus the one stored earlier).
    assert admission.backend().in_flight("acme") == 3


@pytest.mark.parametrize(
    "bad_item, field",
    [
        (ingest_body(source_system=123), "source_system"),
        (ingest_body(payload={"n": 123456789012345678901234567890}), "payload"),
        (ingest_body(payload={"note": "a\u0000b"}), "payload"),
    ],
    ids=["source_system-is-a-number", "payload-int-beyond-64-bits", "payload-nul-character"],
)
def test_a_bad_item_of_a_batch_is_rejected_alone(acme, bad_item, field):
    good = ingest_body(source_ref="GOOD-1")
    response = acme.api.post("/api/exceptions/acme/batch", {"items": [good, bad_item]})
    assert response.status_code == 202, response.content[:1000]
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    assert field in results[1]["errors"]
    assert counts()["exceptions"] == 1
    assert exception_row(results[0]["exception_id"]).source_ref == "GOOD-1"


def test_a_batch_of_1000_items_is_accepted(acme):
    items = [ingest_body(source_ref=f"BULK-{i}") for i in range(1000)]
    response = acme.api.post("/api/exceptions/acme/batch", {"items": items})
    assert response.status_code == 202, response.content[:500]
    body = response.json()
    assert body["accepted"] == 1000 and len(body["results"]) == 1000
    assert len({r["exception_id"] for r in body["results"]}) == 1000
    assert counts()["exceptions"] == 1000 and counts()["events"] == 1000


@pytest.mark.parametrize(
    "body, field",
    [
        ({"items": [ingest_body(source_ref=f"X-{i}") for i in range(1001)]}, "items"),
        ({"items": []}, "items"),
        ({"items": {"source_system": "erp"}}, "items"),
        ({}, "items"),
        ({"items": [ingest_body()], "extra": 1}, "extra"),
    ],
    ids=["1001-items", "empty", "not-a-list", "missing", "unknown-field"],
)
def test_an_invalid_batch_is_400_and_changes_nothing(acme, body, field):
    problem = assert_problem(acme.api.post("/api/exceptions/acme/batch", body), 400, "validation-error")
    assert field in problem["errors"], problem
    assert counts() == NOTHING


def test_a_batch_of_only_bad_items_is_202_with_every_item_rejected(acme):
    response = acme.api.post("/api/exceptions/acme/batch", {"items": [{"payload": {}}, 7]})
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["deduplicated"], body["rejected"]) == (0, 0, 2)
    assert counts() == NOTHING


# --- manual exceptions ----------------------------------------------------------------------


def test_a_manual_exception_is_202_with_a_manual_row_and_a_manual_exception_created_event(acme):
    response = acme.api.post(
        "/api/exceptions/acme/manual",
        {
            "exception_type": "fraud_alert",
            "severity": "high",
            "summary": "Customer jane.doe@example.com called about it",
            "payload": {"account": "ACC-1"},
        },
    )
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["deduplicated"] is False and response["Location"] == answer["status_url"]
    row = exception_row(answer["exception_id"])
    assert row.manual is True
    assert (row.source_system, row.exception_type, row.severity) == ("manual", "fraud_alert", "high")
    assert row.payload == {"account": "ACC-1"}
    (event,) = events_of(answer["exception_id"])
    assert event.event_type == "ManualExceptionCreated" and str(event.event_id) == answer["event_id"]
    assert event.payload["severity"] == "high"
    assert event.payload["created_by"] == f"key:{acme.key.split('.')[0]}"
    assert "jane.doe@example.com" not in event.payload["summary"]
    assert event.payload["summary"].startswith("Customer j***@example.com")
    assert [r.queue for r in outbox_rows("acme")] == ["intake"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"severity": "high"}, "exception_type"),
        ({"exception_type": "fraud_alert", "severity": "apocalyptic"}, "severity"),
        ({"exception_type": "fraud_alert", "payload": [1]}, "payload"),
        ({"exception_type": "fraud_alert", "colour": "red"}, "colour"),
    ],
    ids=["no-type", "bad-severity", "payload-not-object", "unknown-field"],
)
def test_an_invalid_manual_exception_is_400_and_changes_nothing(acme, body, field):
    problem = assert_problem(acme.api.post("/api/exceptions/acme/manual", body), 400, "validation-error")
    assert field in problem["errors"]
    assert counts() == NOTHING


# --- commands on an exception ---------------------------------------------------------------


def test_recalculate_appends_playbook_recalculation_requested(acme):
    exception_id = ingest(acme)
    response = acme.api.post(f"/api/exceptions/acme/{exception_id}/playbook/recalculate", {"reason": "pack v2 loaded"})
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["exception_id"] == exception_id
    assert response["Location"] == answer["status_url"]
    events = events_of(exception_id)
    assert [(e.event_type, e.sequence) for e in events] == [
        ("ExceptionIngested", 1), ("PlaybookRecalculationRequested", 2),
    ]  # fmt: skip
    assert str(events[1].event_id) == answer["event_id"]
    assert events[1].payload == {
        "requested_by": f"key:{acme.key.split('.')[0]}",
        "reason": "pack v2 loaded",
        "actor": "acme",  # the key's name
    }
    assert outbox_rows("acme")[-1].queue == "policy"
    assert outbox_rows("acme")[-1].event_ids == [answer["event_id"]]


def test_recalculate_with_an_empty_body_is_accepted(acme):
    exception_id = ingest(acme)
    response = acme.api.post(f"/api/exceptions/acme/{exception_id}/playbook/recalculate", raw="")
    assert response.status_code == 202, response.content
    assert [e.event_type for e in events_of(exception_id)][-1] == "PlaybookRecalculationRequested"


@pytest.mark.parametrize("command", ["playbook/recalculate", "approve", "feedback"])
def test_commands_on_an_unknown_exception_are_404_and_append_nothing(acme, command):
    body = {"decision": "approve"} if command == "approve" else {}
    response = acme.api.post(f"/api/exceptions/acme/{uuid.uuid4()}/{command}", body)
    assert_problem(response, 404, "not-found")
    assert counts() == NOTHING


@pytest.mark.parametrize(
    "command, body, field",
    [
        ("playbook/recalculate", {"reason": 1, "why": "x"}, "why"),
        ("playbook/recalculate", {"reason": "r" * 501}, "reason"),
        ("approve", {}, "decision"),
        ("approve", {"decision": "maybe"}, "decision"),
        ("approve", {"decision": "approve", "by": "me"}, "by"),
        ("feedback", {"rating": 6}, "rating"),
        ("feedback", {"rating": "great"}, "rating"),
        ("feedback", {"stars": 5}, "stars"),
    ],
)
def test_invalid_commands_are_400_and_append_nothing(acme, command, body, field):
    exception_id = ingest(acme)
    before = counts()
    response = acme.api.post(f"/api/exceptions/acme/{exception_id}/{command}", body)
    problem = assert_problem(response, 400, "validation-error")
    assert field in problem["errors"]
    assert counts() == before


def test_approve_is_409_when_nothing_awaits_approval(acme):
    exception_id = ingest(acme)
    before = counts()
    response = acme.api.post(f"/api/exceptions/acme/{exception_id}/approve", {"decision": "approve"})
    assert_problem(response, 409, "not-awaiting-approval")
    assert counts() == before


def test_approve_records_the_decision_once_for_the_step_awaiting_it(acme):
    exception_id = ingest(acme)
    other = ingest(acme)
    run = await_approval("acme", exception_id, make_playbook("acme"), position=2)

    # A run of another exception awaits nothing for this one.
    assert_problem(acme.api.post(f"/api/exceptions/acme/{other}/approve", {"decision": "approve"}), 409)

    response = acme.api.post(
        f"/api/exceptions/acme/{exception_id}/approve", {"decision": "approve", "comment": "ok, call +1-202-555-0199"}
    )
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["exception_id"] == exception_id and response["Location"] == answer["status_url"]
    decided = [e for e in events_of(exception_id) if e.event_type == "ApprovalDecided"]
    assert len(decided) == 1
    assert str(decided[0].event_id) == answer["event_id"]
    payload = decided[0].payload
    assert (payload["decision"], payload["run_id"], payload["position"]) == ("approve", str(run.id), 2)
    assert payload["decided_by"] == f"key:{acme.key.split('.')[0]}"
    assert "+1-202-555-0199" not in payload["comment"] and payload["comment"].endswith("0199")
    assert outbox_rows("acme")[-1].queue == "playbook"

    before = counts()
    again = acme.api.post(f"/api/exceptions/acme/{exception_id}/approve", {"decision": "reject"})
    assert_problem(again, 409, "not-awaiting-approval")
    assert counts() == before
    assert len([e for e in events_of(exception_id) if e.event_type == "ApprovalDecided"]) == 1


def test_concurrent_approvals_record_one_decision(acme):
    exception_id = ingest(acme)
    await_approval("acme", exception_id, make_playbook("acme"), position=2)
    threads_count = 6
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def approve():
        try:
            api = Api(acme.key)
            barrier.wait(timeout=10)
            statuses.append(
                api.post(f"/api/exceptions/acme/{exception_id}/approve", {"decision": "approve"}).status_code
            )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(statuses) == [202] + [409] * (threads_count - 1)
    assert [e.event_type for e in events_of(exception_id)].count("ApprovalDecided") == 1


def test_reject_is_recorded_as_a_reject_decision(acme):
    exception_id = ingest(acme)
    await_approval("acme", exception_id, make_playbook("acme"), position=1)
    response = acme.api.post(f"/api/exceptions/acme/{exception_id}/approve", {"decision": "reject"})
    assert response.status_code == 202
    (decided,) = [e for e in events_of(exception_id) if e.event_type == "ApprovalDecided"]
    assert decided.payload["decision"] == "reject" and decided.payload["position"] == 1


def test_feedback_appends_feedback_submitted(acme):
    exception_id = ingest(acme)
    response = acme.api.post(
        f"/api/exceptions/acme/{exception_id}/feedback",
        {"rating": 4, "outcome": "resolved", "comment": "mail ops@example.org"},
    )
    assert response.status_code == 202, response.content
    answer = response.json()
    events = events_of(exception_id)
    assert [e.event_type for e in events] == ["ExceptionIngested", "FeedbackSubmitted"]
    assert str(events[1].event_id) == answer["event_id"]
    assert events[1].payload["rating"] == 4 and events[1].payload["outcome"] == "resolved"
    assert events[1].payload["comment"] == "mail o***@example.org"
    assert events[1].payload["submitted_by"] == f"key:{acme.key.split('.')[0]}"


# --- tools ----------------------------------------------------------------------------------


def test_tool_execute_is_202_with_a_requested_execution_and_its_event(acme):
    make_tool("acme")
    exception_id = ingest(acme)
    response = acme.api.post(
        "/api/tools/execute",
        {"exception_id": exception_id, "tool": TOOL, "params": {"attempt": 2, "notify": "jane@example.com"}},
    )
    assert response.status_code == 202, response.content
    answer = response.json()
    execution_id = answer["execution_id"]
    assert answer["status_url"] == f"http://testserver/api/tools/executions/{execution_id}"
    assert response["Location"] == answer["status_url"]

    with tenant_scope("acme"):
        execution = ToolExecution.objects.get(id=execution_id)
    assert str(execution.exception_id) == exception_id
    assert (execution.status, execution.tool_name, execution.tenant_id) == ("requested", TOOL, "acme")
    assert execution.request == {"params": {"attempt": 2, "notify": "j***@example.com"}}

    events = events_of(exception_id)
    assert [e.event_type for e in events] == ["ExceptionIngested", "ToolExecutionRequested"]
    assert events[1].payload["execution_id"] == execution_id and events[1].payload["tool"] == TOOL
    assert str(events[1].event_id) == answer["event_id"]
    assert outbox_rows("acme")[-1].queue == "tool"

    status = acme.api.get(f"/api/tools/executions/{execution_id}")
    assert status.status_code == 200 and status.json()["status"] == "requested"


def test_tool_execute_of_an_unknown_or_inactive_tool_is_400_and_changes_nothing(acme):
    make_tool("acme", name="old_tool")
    with tenant_scope("acme"):
        Tool.objects.filter(name="old_tool").update(is_active=False)
    exception_id = ingest(acme)
    before = counts()
    for tool in ("no_such_tool", "old_tool"):
        response = acme.api.post("/api/tools/execute", {"exception_id": exception_id, "tool": tool})
        problem = assert_problem(response, 400, "validation-error")
        assert "tool" in problem["errors"]
    assert counts() == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"tool": TOOL}, "exception_id"),
        ({"exception_id": "not-a-uuid", "tool": TOOL}, "exception_id"),
        ({"exception_id": "{exception_id}"}, "tool"),
        ({"exception_id": "{exception_id}", "tool": TOOL, "params": [1]}, "params"),
        ({"exception_id": "{exception_id}", "tool": TOOL, "force": True}, "force"),
    ],
    ids=["no-exception", "bad-uuid", "no-tool", "params-not-object", "unknown-field"],
)
def test_an_invalid_tool_execute_is_400_and_changes_nothing(acme, body, field):
    make_tool("acme")
    exception_id = ingest(acme)
    body = {k: (exception_id if v == "{exception_id}" else v) for k, v in body.items()}
    before = counts()
    problem = assert_problem(acme.api.post("/api/tools/execute", body), 400, "validation-error")
    assert field in problem["errors"]
    assert counts() == before


def test_tool_execute_for_an_unknown_exception_is_404(acme):
    make_tool("acme")
    response = acme.api.post("/api/tools/execute", {"exception_id": str(uuid.uuid4()), "tool": TOOL})
    assert_problem(response, 404, "not-found")
    assert counts() == NOTHING


# --- dead letters ---------------------------------------------------------------------------


def test_dead_letter_replay_is_for_operator_keys_only(acme):
    exception_id = ingest(acme)
    (event,) = events_of(exception_id)
    letter = make_dead_letter("acme", event_id=str(event.event_id), exception_id=exception_id)
    before = counts()
    response = acme.api.post(f"/api/dead-letters/{letter.pk}/replay")
    assert_problem(response, 403, "forbidden")
    assert_problem(acme.api.post("/api/dead-letters/999999/replay"), 403, "forbidden")
    assert counts() == before
    with all_tenants_scope():
        assert DeadLetter.objects.get(pk=letter.pk).status == "open"


def test_an_operator_replays_a_dead_letter(acme):
    operator = operator_of("acme")
    exception_id = ingest(acme)
    (event,) = events_of(exception_id)
    letter = make_dead_letter("acme", event_id=str(event.event_id), exception_id=exception_id, consumer="intake")
    outbox_before = {row.id for row in outbox_rows()}

    response = operator.api.post(f"/api/dead-letters/{letter.pk}/replay")
    assert response.status_code == 202, response.content
    assert response.json() == {"id": letter.pk, "status": "replayed", "replay_count": 1}
    with all_tenants_scope():
        stored = DeadLetter.objects.get(pk=letter.pk)
    assert (stored.status, stored.replay_count) == ("replayed", 1)
    (offered,) = [row for row in outbox_rows() if row.id not in outbox_before]
    assert (offered.tenant_id, offered.queue, offered.event_ids) == ("acme", "intake", [str(event.event_id)])


def test_replaying_an_unknown_discarded_or_empty_dead_letter_fails_clearly(acme):
    operator = operator_of("acme")
    assert_problem(operator.api.post("/api/dead-letters/999999/replay"), 404, "not-found")
    discarded = make_dead_letter("acme", event_id=str(uuid.uuid4()), status="discarded")
    assert_problem(operator.api.post(f"/api/dead-letters/{discarded.pk}/replay"), 409, "discarded")
    undecodable = make_dead_letter(None, source="broker", consumer="triage", message_id="m-1", body="garbage")
    assert_problem(operator.api.post(f"/api/dead-letters/{undecodable.pk}/replay"), 409, "not-replayable")
    assert counts()["outbox"] == 0


# --- PII ------------------------------------------------------------------------------------

RAW_PII = ("jane.doe@example.com", "+1-202-555-0199", "4111 1111 1111 1111", "4111111111111111")
NOT_A_CARD = "1234567890123456"


def test_pii_is_redacted_before_it_is_stored_published_or_served(acme):
    payload = {
        "customer": {"email": "jane.doe@example.com", "phone": "+1-202-555-0199"},
        "note": "card 4111 1111 1111 1111 declined; ref 1234567890123456",
        "cards": ["4111111111111111"],
        "order_number": NOT_A_CARD,
    }
    response = acme.api.post("/api/exceptions/acme", ingest_body(payload=payload))
    assert response.status_code == 202, response.content
    exception_id = response.json()["exception_id"]

    row = exception_row(exception_id)
    (event,) = events_of(exception_id)
    stored = [orjson.dumps(row.payload).decode(), orjson.dumps(event.payload).decode()]
    stored += [orjson.dumps([r.event_ids, r.queue, r.last_error]).decode() for r in outbox_rows()]
    detail = acme.api.get(f"/api/exceptions/acme/{exception_id}")
    listing = acme.api.get("/api/exceptions/acme")
    assert detail.status_code == listing.status_code == 200
    served = [detail.content.decode(), listing.content.decode()]

    for text in stored + served:
        for raw in RAW_PII:
            assert raw not in text, (raw, text)
    # Redacted, with enough shape left to be useful; an ordinary 16-digit number survives.
    assert row.payload["customer"]["email"] == "j***@example.com"
    assert row.payload["customer"]["phone"].endswith("0199")
    assert row.payload["cards"] == ["****1111"]
    assert row.payload["note"] == f"card ****1111 declined; ref {NOT_A_CARD}"
    assert row.payload["order_number"] == NOT_A_CARD
    assert event.payload["payload"] == row.payload
    assert detail.json()["payload"] == row.payload
    assert detail.json()["events"][0]["payload"]["payload"] == row.payload
    assert json.loads(listing.content)["results"][0]["payload"] == row.payload


def test_fields_a_tenant_marks_as_pii_are_redacted_wherever_they_appear():
    # A tenant of its own: PII rules are cached per tenant for a while.
    party = tenant_with_key("pii-rules")
    make_tenant("pii-rules", overrides={"pii": {"fields": ["holder"], "patterns": [r"\bNID-\d{6}\b"]}})
    forget_caches()
    payload = {"holder": "Johnathan Smith", "nested": [{"Holder": "Jo"}], "note": "id NID-123456 ok"}
    exception_id = ingest(party, payload=payload)
    stored = exception_row(exception_id).payload
    assert stored["holder"] == "********* ***th"
    assert stored["nested"] == [{"Holder": "***"}]
    assert "123456" not in stored["note"] and stored["note"].endswith("3456 ok")
    (event,) = events_of(exception_id)
    assert event.payload["payload"] == stored


def test_pii_in_a_batch_and_a_manual_exception_is_redacted(acme):
    batch = acme.api.post(
        "/api/exceptions/acme/batch",
        {"items": [ingest_body(payload={"who": "jane.doe@example.com", "card": "4111111111111111"})]},
    )
    manual = acme.api.post(
        "/api/exceptions/acme/manual",
        {"exception_type": "fraud_alert", "payload": {"phone": "+1-202-555-0199", "id": NOT_A_CARD}},
    )
    assert batch.status_code == manual.status_code == 202
    with all_tenants_scope():
        texts = [orjson.dumps(p).decode() for p in ExceptionRecord.objects.values_list("payload", flat=True)]
        texts += [orjson.dumps(p).decode() for p in ExceptionEvent.objects.values_list("payload", flat=True)]
    assert len(texts) == 4
    for text in texts:
        for raw in RAW_PII:
            assert raw not in text, (raw, text)
    assert any(NOT_A_CARD in text for text in texts)
