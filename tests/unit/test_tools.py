"""Tool runners (no network but a local endpoint): host allow-list, idempotency key, outcomes."""

from tests.support.webhook import Webhook
from tools_app import runners
from tools_app.builtins import ToolContext

CONTEXT = ToolContext(
    tenant_id="acme", exception_id="x-1", execution_id="6b1f6c4e-3f0a-4c39-9a4e-0d3c5e1d7a11", attempt=1
)


def run_http(url: str, allowed: list[str], **config):
    return runners.run(kind="http", config={"url": url, "method": "POST", "timeout_seconds": 2, **config}, params={"a": 1},
                       view={}, context=CONTEXT, allowed_hosts=allowed)  # fmt: skip


def test_a_tool_cannot_be_pointed_at_hosts_the_tenant_did_not_allow():
    with Webhook() as hook:
        for url, allowed in (
            ("http://169.254.169.254/latest/meta-data", ["hooks.example.com"]),
            (hook.url("/ok"), []),
            (hook.url("/ok"), ["127.0.0.1:1"]),  # same host, other port
            ("file:///etc/passwd", ["localhost"]),
        ):
            outcome = run_http(url, allowed)
            assert outcome.status == "failed" and "allowed hosts" in outcome.error, (url, outcome)
        assert hook.requests == []


def test_http_outcomes_and_the_idempotency_key():
    with Webhook(slow_seconds=3) as hook:
        allowed = [f"127.0.0.1:{hook.port}"]
        ok = run_http(hook.url("/ok"), allowed, body={"ref": "{{params.a}}"})
        assert ok.status == "succeeded" and ok.response["status_code"] == 200
        assert hook.requests[-1]["key"] == CONTEXT.execution_id and hook.requests[-1]["body"] == {"ref": 1}
        assert run_http(hook.url("/fail"), allowed).status == "retry"
        timeout = run_http(hook.url("/slow-once"), allowed, timeout_seconds=0.5)
        assert timeout.status == "retry" and "outcome unknown" in timeout.error


def test_builtins():
    assert runners.run(kind="builtin", config={"callable": "lookup_counterparty"}, params={"counterparty": "X"}, view={},
                       context=CONTEXT, allowed_hosts=[]).status == "succeeded"  # fmt: skip
    missing = runners.run(
        kind="builtin",
        config={"callable": "lookup_counterparty"},
        params={},
        view={},
        context=CONTEXT,
        allowed_hosts=[],
    )
    assert missing.status == "failed"
    unknown = runners.run(
        kind="builtin", config={"callable": "nope"}, params={}, view={}, context=CONTEXT, allowed_hosts=[]
    )
    assert unknown.status == "failed" and "no builtin" in unknown.error
