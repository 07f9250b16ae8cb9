import hashlib
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from sentinai.models import Tenant, TenantAPIKey

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_tenant_is_idempotent_and_updates_limits():
    run("create_tenant", "acme", "--domain-pack", "finance")
    run("create_tenant", "acme", "--domain-pack", "finance", "--rate", "5", "--burst", "10", "--max-in-flight", "7")
    tenant = Tenant.objects.get()
    assert (tenant.id, tenant.domain_pack, tenant.rate_per_second, tenant.burst, tenant.max_in_flight) == (
        "acme", "finance", 5.0, 10, 7,
    )  # fmt: skip


def test_create_tenant_rejects_a_bad_slug():
    with pytest.raises(CommandError, match="tenant id"):
        run("create_tenant", "Not A Slug", "--domain-pack", "finance")
    assert not Tenant.objects.exists()


def test_create_api_key_prints_the_key_alone_on_the_last_line_and_stores_only_a_hash():
    run("create_tenant", "acme", "--domain-pack", "finance")
    output = run("create_api_key", "acme", "--operator")
    key = output.strip().splitlines()[-1]
    assert " " not in key and "." in key
    stored = TenantAPIKey.objects.get()
    assert stored.is_operator and stored.tenant_id == "acme"
    assert key not in (stored.id, stored.hashed_key)
    assert stored.hashed_key == "sha512$$" + hashlib.sha512(key.encode()).hexdigest()
    assert TenantAPIKey.objects.get_from_key(key) == stored


def test_create_api_key_names_the_actor_and_takes_scopes():
    run("create_tenant", "acme", "--domain-pack", "finance")
    output = run("create_api_key", "acme", "--name", "ops-desk:approver-1", "--scopes", "approve,read")
    stored = TenantAPIKey.objects.get()
    assert (stored.name, stored.scopes) == ("ops-desk:approver-1", ["read", "approve"])
    assert "'ops-desk:approver-1' (read,approve)" in output
    assert TenantAPIKey.objects.get_from_key(output.strip().splitlines()[-1]) == stored


def test_create_api_key_defaults_to_ingest_and_read_and_operator_to_operate_and_read():
    run("create_tenant", "acme", "--domain-pack", "finance")
    run("create_api_key", "acme")
    run("create_api_key", "acme", "--operator")
    assert sorted((k.name, tuple(k.scopes)) for k in TenantAPIKey.objects.all()) == [
        ("acme", ("ingest", "read")),
        ("acme:operator", ("read", "operate")),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scopes", "ingest,admin"], "unknown scope"),
        (["--scopes", ","], "at least one scope"),
        (["--name", "x" * 51], "1-50 printable"),
    ],
)
def test_create_api_key_refuses_bad_scopes_and_names_and_creates_nothing(args, message):
    run("create_tenant", "acme", "--domain-pack", "finance")
    with pytest.raises(CommandError, match=message):
        run("create_api_key", "acme", *args)
    assert not TenantAPIKey.objects.exists()


def test_create_api_key_for_unknown_tenant_fails():
    with pytest.raises(CommandError, match="unknown tenant"):
        run("create_api_key", "nobody")


def test_seed_demo_is_idempotent(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    first = run("seed_demo")
    second = run("seed_demo")
    assert first == second
    assert set(Tenant.objects.values_list("id", flat=True)) == {"acme-finance", "medi-claims"}
    assert [k.scopes for k in TenantAPIKey.objects.order_by("name")] == [
        ["ingest", "read", "approve"],
        ["read", "operate"],
        ["ingest", "read", "approve"],
    ]
    *keys, login = first.splitlines()
    for line in keys:
        assert TenantAPIKey.objects.is_valid(line.split()[-1])
    # The demo admin login, kept across runs like the keys.
    assert login.startswith("admin login") and login.split()[-3:-1] == ["operator", "/"]
    assert User.objects.get(username="operator").check_password(login.split()[-1])
