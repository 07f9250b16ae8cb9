"""Domain packs: validation with clear errors, immutable versions, binding tenants."""

import pytest
from django.core.management import CommandError, call_command

from playbooks_app.models import Playbook, PlaybookStep
from sentinai.packs import domain
from sentinai.tenancy.scope import tenant_scope
from sentinai.tenancy.services import tenant_create_or_update
from tests.support.host import ROOT
from tools_app.models import Tool


def test_the_shipped_packs_are_valid():
    finance = domain.load_file(ROOT / "domain_packs" / "finance.yaml")
    healthcare = domain.load_file(ROOT / "domain_packs" / "healthcare.yaml")
    assert "SETTLEMENT_FAILURE" in finance.exception_types and "CLAIM_REJECTED" in healthcare.exception_types
    assert finance.policies.approval_severities == ["critical"]


def test_errors_name_the_file_the_path_and_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nversion: 1\nexception_types:\n  A: {required: {amount: money}}\n"
        "playbooks:\n  - name: p\n    match: {field: x, eq: 1}\n    steps: [{name: s, action: tool, tool: missing}]\n"
    )
    with pytest.raises(domain.PackError) as error:
        domain.load_file(bad)
    message = str(error.value)
    assert f"{bad}: exception_types.A.required.amount:" in message
    assert "'string', 'number'" in message
    bad.write_text(
        "name: bad\nversion: 1\nexception_types: {A: {}}\nplaybooks:\n  - {name: p, match: {field: x, eq: 1}, steps: [{name: s, action: tool, tool: missing}]}\n"
    )
    with pytest.raises(domain.PackError, match="uses unknown tool 'missing'"):
        domain.load_file(bad)
    bad.write_text("name: [unclosed")
    with pytest.raises(domain.PackError, match=f"{bad}: not valid YAML"):
        domain.load_file(bad)


@pytest.mark.django_db(transaction=True)
def test_versions_are_immutable_and_binding_materialises_the_tenant_rows(tmp_path):
    tenant, _ = tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    with tenant_scope("acme"):
        assert Playbook.objects.filter(is_active=True).count() == 3
        assert set(Tool.objects.filter(is_active=True).values_list("name", flat=True)) >= {
            "lookup_counterparty",
            "retry_settlement",
        }
        assert PlaybookStep.objects.filter(playbook__name="settlement_retry").count() == 5
    changed = (ROOT / "domain_packs" / "finance.yaml").read_text().replace("settlements-desk", "another-desk")
    edited = tmp_path / "finance.yaml"
    edited.write_text(changed)
    with pytest.raises(CommandError, match="already loaded with different content"):
        call_command("load_domain_pack", str(edited))
    edited.write_text(changed.replace("version: 1", "version: 2", 1))
    call_command("load_domain_pack", str(edited))
    with tenant_scope("acme"):
        versions = dict(Playbook.objects.filter(name="settlement_retry").values_list("version", "is_active"))
        assert versions == {1: False, 2: True}
        v2 = PlaybookStep.objects.get(playbook__name="settlement_retry", playbook__version=2, name="tell_desk")
        v1 = PlaybookStep.objects.get(playbook__name="settlement_retry", playbook__version=1, name="tell_desk")
        assert v2.params["channel"] == "another-desk" and v1.params["channel"] == "settlements-desk"


@pytest.mark.django_db(transaction=True)
def test_create_tenant_uses_a_shipped_pack_by_name_and_refuses_an_unknown_one():
    call_command("create_tenant", "clinic", "--domain-pack", "healthcare")
    with tenant_scope("clinic"):
        assert set(Playbook.objects.values_list("name", flat=True)) == {"claim_resubmission", "claim_information"}
    with pytest.raises(CommandError, match="no domain pack 'astrology'"):
        call_command("create_tenant", "stars", "--domain-pack", "astrology")
    from sentinai.models import Tenant

    assert not Tenant.objects.filter(pk="stars").exists()


@pytest.mark.django_db(transaction=True)
def test_agents_read_definitions_from_a_per_process_cache_that_follows_the_bound_version(
    tmp_path, django_assert_num_queries
):
    from playbooks_app.selectors import active_playbooks, playbook_definitions
    from tools_app.selectors import auto_approved_tool_names

    tenant, _ = tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    with tenant_scope("acme"):
        first = active_playbooks(tenant=tenant)
        auto_approved_tool_names(tenant=tenant)
        settlement = next(p for p in first if p["name"] == "settlement_retry")
        playbook_definitions(tenant_id="acme", playbook_ids=[settlement["id"]])
        # Every batch after the first reads only the version checks, no definition rows.
        with django_assert_num_queries(2):
            assert active_playbooks(tenant=tenant) == first
            assert "retry_settlement" in auto_approved_tool_names(tenant=tenant)
        with django_assert_num_queries(0):  # a playbook version never changes
            steps, versions = playbook_definitions(tenant_id="acme", playbook_ids=[settlement["id"]])
        assert [s.name for s in steps[settlement["id"]].values()][:2] == ["check_counterparty", "desk_approval"]
        assert versions == {settlement["id"]: 1}

    # A new pack version is bound to the tenant: the next batch sees its playbooks at once, even
    # with the tenant row its process cached before.
    changed = (ROOT / "domain_packs" / "finance.yaml").read_text().replace("settlements-desk", "another-desk")
    edited = tmp_path / "finance.yaml"
    edited.write_text(changed.replace("version: 1", "version: 2", 1))
    call_command("load_domain_pack", str(edited))
    with tenant_scope("acme"):
        assert {p["version"] for p in active_playbooks(tenant=tenant)} == {2}
        assert {p["id"] for p in active_playbooks(tenant=tenant)}.isdisjoint({p["id"] for p in first})
