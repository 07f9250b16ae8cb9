"""The shipped dashboard and alert rules (monitoring/): promtool checks the rules and runs their unit tests
(Debian's prometheus package, scripts/test-tools.sh), every panel query is valid PromQL, and every metric
a panel or a rule names is one a live /metrics of the platform exports - after one exception went
through real workers on RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sentinai.tenancy.services import api_key_create
from tests.support.finance import FinanceTenant
from tests.support.host import ROOT
from tests.support.platform import Platform
from tests.support.scenarios import settlement
from tests.support.webhook import Webhook

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "sentinai.json"
METRIC = re.compile(r"\b(sentinai_[a-z0-9_]+|up)\b(?=\s*[{\[)\s]|$)")
# Prometheus's own series, not the platform's.
PROMETHEUS_OWN = {"up"}
# Exported by work not merged yet (the outage handling's gauge, branch h-faults): tolerated while absent.
PENDING = {"sentinai_dependency_up"}


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_expressions() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels for t in p.get("targets", [])}


def promtool(*args: str, cwd=MONITORING / "prometheus") -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_alert_rules_and_runs_their_unit_tests():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    alerts = set(rule_expressions())
    assert {
        "SentinaiDeadLettersGrowing", "SentinaiOutboxOld", "SentinaiSLAExpired", "SentinaiHigh5xxRate",
        "SentinaiQueueWithoutConsumer", "SentinaiDependencyDown",
    } <= alerts  # fmt: skip
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert f'<a id="{anchor}"></a>' in runbook, f"{rule['alert']}: docs/runbook.md has no {anchor}"


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each panel query as a recording rule."""
    rules = [{"record": f"panel:{i}", "expr": expr} for i, expr in enumerate(panel_expressions().values())]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checked = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    titles = " ".join(panel_expressions())
    for topic in (
        "Events applied",
        "latency",
        "Failed",
        "Retries",
        "Dead letters",
        "Outbox lag",
        "Queue depth",
        "429s",
        "SLA",
    ):
        assert topic in titles, topic


def test_compose_provisions_prometheus_with_the_rules_and_grafana_with_the_dashboard():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "./monitoring/prometheus/alerts.yml:/etc/prometheus/alerts.yml" in prometheus
    assert "./monitoring/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in prometheus
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
    grafana = services["grafana"]["volumes"]
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/sentinai.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"] if "datasource" in p}
    assert uids == {datasource["datasources"][0]["uid"]}


@pytest.fixture(scope="module")
def platform(django_db_setup, tmp_path_factory):
    with Platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_every_metric_a_panel_or_a_rule_names_is_exported_by_a_live_metrics(live_server, platform):
    with Webhook() as webhook:
        tenant = FinanceTenant(live_server.url, webhook, prefix="metrics")
        exception_id = tenant.report(settlement(50_000))
        tenant.wait_for_event(exception_id, "FeedbackCaptured")
    from sentinai.models import Tenant

    _, key = api_key_create(
        tenant=Tenant.objects.get(pk=tenant.id), name=f"prometheus-{uuid.uuid4().hex[:6]}", scopes=("operate",)
    )
    scrape = httpx.get(f"{live_server.url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert scrape.status_code == 200, scrape.text[:300]
    exported = set()
    for family in text_string_to_metric_families(scrape.text):
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)

    used: dict[str, set[str]] = {}
    for where, expr in {**rule_expressions(), **panel_expressions()}.items():
        names = set(METRIC.findall(expr))
        assert names, f"{where}: no metric found in {expr!r}"
        for name in names:
            used.setdefault(name, set()).add(where)
    missing = {n: sorted(w) for n, w in used.items() if n not in exported | PROMETHEUS_OWN | PENDING}
    assert not missing, missing
    # The scenario really went through the workers: these come from them, not from the API.
    assert {
        "sentinai_events_processed_total",
        "sentinai_batch_seconds_bucket",
        "sentinai_end_to_end_seconds_bucket",
    } <= exported
    pending_exported = PENDING & exported
    print(f"metrics used: {len(used)}; pending and not exported yet: {sorted(PENDING - pending_exported)}")
