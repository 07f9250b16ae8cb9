"""API key authentication: `Authorization: Bearer <key>`.

Keys are stored as prefix + SHA-512 hash (djangorestframework-api-key). A verified key is cached in
process for a few seconds, so a burst of requests costs one database lookup; revoking a key takes
effect within KEY_CACHE_SECONDS.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from sentinai.kernel.cache import TTLCache
from sentinai.models import Scope, TenantAPIKey

KEY_CACHE_SECONDS = 10.0
_verified: TTLCache[Principal] = TTLCache(ttl=KEY_CACHE_SECONDS)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key of one tenant, its name (the actor of human actions) and its scopes.

    Writes are for the key's own tenant only, whatever its scopes; `operate` widens reads to every tenant.
    """

    tenant_id: str
    name: str
    scopes: frozenset[str]
    key_prefix: str

    is_authenticated = True

    @property
    def is_operator(self) -> bool:
        return Scope.OPERATE in self.scopes

    @property
    def actor(self) -> str:
        """Who did it, as recorded in events: the key's name."""
        return self.name

    @property
    def key_ref(self) -> str:
        """Which key did it: its public prefix."""
        return f"key:{self.key_prefix}"

    def may_read(self, tenant_id: str) -> bool:
        return self.tenant_id == tenant_id or self.is_operator

    def may_write(self, tenant_id: str) -> bool:
        return self.tenant_id == tenant_id


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # -> 401 NotAuthenticated (the view requires a principal)
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or " " in key or "." not in key or len(key) > 200:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <api key>'.")
        principal = verify(key)
        if principal is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return principal, key

    def authenticate_header(self, request):
        return 'Bearer realm="sentinai"'


def verify(key: str) -> Principal | None:
    # Unknown keys are not remembered: a key created a moment ago works at once.
    return _verified.get_or_load(key, lambda: _verify(key), keep_none=False)


def _verify(key: str) -> Principal | None:
    try:
        api_key = TenantAPIKey.objects.get_from_key(key)
    except TenantAPIKey.DoesNotExist:
        return None
    if api_key.has_expired:
        return None
    return Principal(
        tenant_id=api_key.tenant_id,
        name=api_key.name,
        scopes=frozenset(api_key.scopes or ()),
        key_prefix=api_key.prefix,
    )


def forget_cached_keys() -> None:
    _verified.forget()
