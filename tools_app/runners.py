"""Running one attempt of a tool execution: builtin callables and HTTP webhooks.

HTTP tools send `Idempotency-Key: <execution id>` on every attempt, so a retry after a timeout (an
unknown outcome) can never become a second, distinct action on the receiving side. URLs are limited to
the tenant's allowed hosts (overrides["allowed_hosts"], "host" or "host:port"), so a tool cannot be
pointed at internal addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from sentinai.packs.conditions import render
from tools_app.builtins import REGISTRY, ToolContext, ToolError

MAX_RESPONSE_CHARS = 20_000


@dataclass(frozen=True)
class Outcome:
    status: Literal["succeeded", "failed", "retry"]
    response: Any = None
    error: str = ""
    request: dict | None = None


@dataclass(frozen=True)
class Attempt:
    """What one attempt of an execution did, handed from the tool agent's perform to its decide."""

    outcome: Outcome
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class AlreadyFinished:
    """No attempt was made: the execution had already ended (a repeated request)."""

    status: str


def _host_allowed(url: str, allowed: list[str]) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return any(entry.lower() in (host, f"{host}:{port}") for entry in allowed)


def run(
    *,
    kind: str,
    config: dict[str, Any],
    params: dict[str, Any],
    view: dict[str, Any],
    context: ToolContext,
    allowed_hosts: list[str],
) -> Outcome:
    if kind == "builtin":
        return _run_builtin(config, params, context)
    if kind == "http":
        return _run_http(config, params, view, context, allowed_hosts)
    return Outcome("failed", error=f"unknown tool kind {kind!r}")


def _run_builtin(config, params, context) -> Outcome:
    fn = REGISTRY.get(config.get("callable", ""))
    if fn is None:
        return Outcome("failed", error=f"no builtin tool {config.get('callable')!r}")
    try:
        return Outcome("succeeded", response=fn(params, context))
    except ToolError as exc:
        return Outcome("retry" if exc.retryable else "failed", error=str(exc))


def _run_http(config, params, view, context, allowed_hosts) -> Outcome:
    scope = {**view, "params": params, "execution": {"id": context.execution_id, "attempt": context.attempt}}
    url = render(config["url"], scope)
    if not isinstance(url, str) or not _host_allowed(url, allowed_hosts):
        return Outcome("failed", error=f"the tool's URL host is not among the tenant's allowed hosts: {url!r}")
    headers = {str(k): str(v) for k, v in render(config.get("headers") or {}, scope).items()}
    headers["Idempotency-Key"] = context.execution_id
    body = render(config["body"], scope) if config.get("body") is not None else params
    method = config.get("method", "POST")
    request = {"method": method, "url": url, "body": body}
    try:
        with httpx.Client(timeout=float(config.get("timeout_seconds", 10)), follow_redirects=False) as client:
            response = client.request(method, url, json=body if method != "GET" else None, headers=headers)
    except httpx.TimeoutException as exc:
        return Outcome(
            "retry",
            error=f"timed out after {config.get('timeout_seconds', 10)}s (outcome unknown): {exc}",
            request=request,
        )
    except httpx.HTTPError as exc:
        return Outcome("retry", error=f"{type(exc).__name__}: {exc}", request=request)
    try:
        payload = response.json()
    except ValueError:
        payload = response.text[:MAX_RESPONSE_CHARS]
    result = {"status_code": response.status_code, "body": payload}
    if 200 <= response.status_code < 300:
        return Outcome("succeeded", response=result, request=request)
    if response.status_code in (408, 409, 425, 429) or response.status_code >= 500:
        return Outcome("retry", response=result, error=f"HTTP {response.status_code}", request=request)
    return Outcome("failed", response=result, error=f"HTTP {response.status_code}", request=request)
