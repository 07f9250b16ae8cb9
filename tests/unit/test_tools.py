"""Tool runners (no network but a local endpoint): host allow-list, idempotency key, outcomes."""

from tests.support.webhook import Webhook
from tools_app import runners
from tools_app.builtins import ToolContext

CONTEXT = ToolContext(
    tenant_id="acme", exception_id="x-1", execution_id="6b1f6c4e-3f0a-4c39-9a4e-0d3c5e1d7a11", attempt=1
)


LOOPBACK = ["127.0.0.0/8"]  # the test webhook listens on loopback, which a tenant must allow explicitly


def run_http(url: str, allowed: list[str], cidrs: list[str] = LOOPBACK, **config):
    return runners.run(kind="http", config={"url": url, "method": "POST", "timeout_seconds": 2, **config}, params={"a": 1},
                       view={}, context=CONTEXT, allowed_hosts=allowed, allowed_cidrs=cidrs)  # fmt: skip


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


def test_an_allowed_host_resolving_to_an_internal_address_is_refused_unless_its_cidr_is_allowed():
    with Webhook() as hook:
        for url, allowed in (
            (hook.url("/ok"), [f"127.0.0.1:{hook.port}"]),
            (hook.url("/ok").replace("127.0.0.1", "localhost"), [f"localhost:{hook.port}"]),
            ("http://169.254.169.254/latest/meta-data", ["169.254.169.254"]),
            ("http://10.1.2.3:8080/x", ["10.1.2.3:8080"]),
            ("http://[::1]:8080/x", ["::1:8080"]),
        ):
            outcome = run_http(url, allowed, cidrs=[])
            assert outcome.status == "failed" and "internal address" in outcome.error, (url, outcome)
        assert hook.requests == []
        assert run_http(hook.url("/ok"), [f"127.0.0.1:{hook.port}"], cidrs=["127.0.0.1/32"]).status == "succeeded"


def test_an_allowed_host_without_a_port_allows_only_the_schemes_default_port():
    with Webhook() as hook:
        outcome = run_http(hook.url("/ok"), ["127.0.0.1"])
        assert outcome.status == "failed" and "allowed hosts" in outcome.error
        assert hook.requests == []


def test_the_request_goes_to_the_address_that_was_checked_with_the_name_in_the_host_header(monkeypatch):
    resolved = []

    def resolve(host, port, *args, **kwargs):
        resolved.append(host)
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(runners.socket, "getaddrinfo", resolve)
    with Webhook() as hook:
        outcome = run_http(f"http://hooks.example.test:{hook.port}/ok", [f"hooks.example.test:{hook.port}"])
        assert outcome.status == "succeeded", outcome
        # The name is resolved once, by the check; the connection is made to the literal address checked.
        assert resolved[0] == "hooks.example.test" and set(resolved[1:]) <= {"127.0.0.1"}
        assert hook.requests[-1]["host"] == f"hooks.example.test:{hook.port}"


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


def test_http_calls_share_one_tls_context_per_process(monkeypatch):
    """Building a TLS context loads the CA bundle (~40 ms of CPU): made once, not per call."""
    runners._tls_context.cache_clear()
    made = []
    real = runners.httpx.create_ssl_context
    monkeypatch.setattr(runners.httpx, "create_ssl_context", lambda *a, **k: made.append(1) or real(*a, **k))
    with Webhook() as hook:
        for _ in range(3):
            assert run_http(hook.url("/ok"), [f"127.0.0.1:{hook.port}"]).status == "succeeded"
        assert len(hook.requests) == 3
    assert made == [1]
