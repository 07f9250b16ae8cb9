"""Running one attempt of a tool execution: builtin callables and HTTP webhooks.

HTTP tools send `Idempotency-Key: <execution id>` on every attempt, so a retry after a timeout (an
unknown outcome) can never become a second, distinct action on the receiving side.

A tool cannot be pointed at internal addresses (SSRF): its URL's host must be among the tenant's
allowed hosts (overrides["allowed_hosts"]: "host" allows the scheme's default port only,
"host:port" that port); the host is resolved once, every address it resolves to must be public
(no loopback, private, link-local - cloud metadata -, multicast, reserved or unspecified address)
unless it lies in a CIDR the tenant allows (overrides["allowed_cidrs"]), and the request connects to
the address that was checked (the name goes in the Host header and TLS SNI), so a second resolution
cannot swap it.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from sentinai.packs.conditions import render
from tools_app.builtins import REGISTRY, ToolContext, ToolError

MAX_RESPONSE_CHARS = 20_000


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process for every call (verifying against httpx's CA bundle, or
    SSL_CERT_FILE): building one loads the bundle, ~40 ms of CPU that a client made per call would
    otherwise pay on every call, https or not (docs/performance.md, "Horizontal scale")."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class Outcome:
    status: Literal["succeeded", "failed", "retry"]
    response: Any = None
    error: str = ""
    request: dict | None = None


@dataclass(frozen=True)
class Attempt:
    """What one attempt of an execution did, handed from the tool agent's perform to its decide.

    recorded: the attempt was counted (the execution marked running) and committed before the call. An
    in-process attempt that ended is not (tools_app.services.tool_executions_attempt): the write that ends
    the execution records its attempt count and started_at (the first attempt's, or the batch's time)."""

    outcome: Outcome
    attempts: int
    max_attempts: int
    recorded: bool = True
    started_at: datetime | None = None


@dataclass(frozen=True)
class AlreadyFinished:
    """No attempt was made: the execution had already ended (a repeated request)."""

    status: str


def _host_allowed(url: str, allowed: list[str]) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        return False
    entries = {e.lower() for e in allowed}
    return f"{host}:{port}" in entries or (port == default and host in entries)


class Refused(Exception):
    pass


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def resolve_checked(host: str, port: int, allowed_cidrs: list[str]) -> str:
    """The address to connect to for `host`: resolved once; every address it resolves to must be
    public or inside one of `allowed_cidrs`. Raises Refused otherwise."""
    try:
        networks = [ipaddress.ip_network(c, strict=False) for c in allowed_cidrs]
    except (TypeError, ValueError) as exc:
        raise Refused(f"overrides.allowed_cidrs holds an invalid network: {exc}") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host!r}: {exc}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise Refused(f"{host!r} resolves to no address")
    for address in addresses:
        if not (_public(address) or any(address in network for network in networks)):
            raise Refused(
                f"{host!r} resolves to {address}, an internal address the tenant does not allow (overrides.allowed_cidrs)"
            )
    return str(addresses[0])


def run(
    *,
    kind: str,
    config: dict[str, Any],
    params: dict[str, Any],
    view: dict[str, Any],
    context: ToolContext,
    allowed_hosts: list[str],
    allowed_cidrs: list[str] = (),
) -> Outcome:
    if kind == "builtin":
        return _run_builtin(config, params, context)
    if kind == "http":
        return _run_http(config, params, view, context, allowed_hosts, list(allowed_cidrs))
    return Outcome("failed", error=f"unknown tool kind {kind!r}")


def _run_builtin(config, params, context) -> Outcome:
    fn = REGISTRY.get(config.get("callable", ""))
    if fn is None:
        return Outcome("failed", error=f"no builtin tool {config.get('callable')!r}")
    try:
        return Outcome("succeeded", response=fn(params, context))
    except ToolError as exc:
        return Outcome("retry" if exc.retryable else "failed", error=str(exc))


def _run_http(config, params, view, context, allowed_hosts, allowed_cidrs) -> Outcome:
    scope = {**view, "params": params, "execution": {"id": context.execution_id, "attempt": context.attempt}}
    url = render(config["url"], scope)
    if not isinstance(url, str) or not _host_allowed(url, allowed_hosts):
        return Outcome("failed", error=f"the tool's URL host is not among the tenant's allowed hosts: {url!r}")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve_checked(parts.hostname, port, allowed_cidrs)
    except Refused as exc:
        return Outcome("failed", error=f"the tool's URL is refused: {exc}")
    headers = {str(k): str(v) for k, v in render(config.get("headers") or {}, scope).items()}
    headers["Idempotency-Key"] = context.execution_id
    headers["Host"] = parts.netloc.rpartition("@")[2]
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    pinned_url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    body = render(config["body"], scope) if config.get("body") is not None else params
    method = config.get("method", "POST")
    request = {"method": method, "url": url, "body": body}
    try:
        with httpx.Client(
            timeout=float(config.get("timeout_seconds", 10)), follow_redirects=False, verify=_tls_context()
        ) as client:
            response = client.request(
                method,
                pinned_url,
                json=body if method != "GET" else None,
                headers=headers,
                extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else None,
            )
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
