"""Base of every API view: authentication by API key, tenant authorisation, tenant-scoped transactions."""

from __future__ import annotations

from contextlib import AbstractContextManager

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.views import APIView

from sentinai.api.auth import ApiKeyAuthentication, Principal
from sentinai.api.problems import Problem
from sentinai.kernel import ids
from sentinai.models import Scope, Tenant
from sentinai.tenancy import tenants
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope


class HasApiKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Principal)


class ApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    # The query parameters the view understands; any other is refused (400), as unknown body fields are.
    query_serializer: type | None = None
    # The scopes a key needs for this view's GET and for its POST.
    read_scope: Scope = Scope.READ
    write_scope: Scope | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        needed = self.read_scope if request.method in SAFE_METHODS else self.write_scope
        if needed is None:
            raise ImproperlyConfigured(f"{type(self).__name__} takes {request.method} but declares no write_scope")
        if needed not in self.principal.scopes:
            raise Problem(
                403,
                "forbidden",
                f"This API key lacks the scope {needed.value!r}.",
                missing_scope=needed.value,
            )
        allowed = set(self.query_serializer._declared_fields) if self.query_serializer else set()
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise Problem(
                400,
                "validation-error",
                "The request is not valid; see errors.",
                errors={name or "(empty name)": ["Unknown query parameter."] for name in unknown},
            )

    @property
    def principal(self) -> Principal:
        return self.request.user

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant named in the path, if this key may act for it: read it (its own, or any with
        `operate`), write for it (its own only). Another tenant's path answers 403 whether or not that
        tenant exists; only operators reading can learn that one does not (404)."""
        reading = self.request.method in SAFE_METHODS
        if not (self.principal.may_read(tenant_id) if reading else self.principal.may_write(tenant_id)):
            detail = "This API key belongs to another tenant."
            if not reading and self.principal.is_operator:
                detail += " The operate scope reads across tenants; it never writes for another."
            raise Problem(403, "forbidden", detail)
        tenant = tenants.get(tenant_id)
        if tenant is None or not tenant.is_active:
            raise Problem(404, "not-found", f"No tenant {tenant_id!r}.")
        return tenant

    @property
    def readable_tenant(self) -> str | None:
        """Whose rows an id-addressed read may return: the key's tenant's, or None (every tenant's)
        for an operate key. Applied in every such query, whatever the database's row-level security does."""
        return None if self.principal.is_operator else self.principal.tenant_id

    def scope(self, tenant_id: str | None = None) -> AbstractContextManager:
        """A transaction seeing `tenant_id`'s rows, or for an id-addressed resource with no tenant in
        the path: the caller's tenant, or every tenant for an operator key."""
        if tenant_id is not None:
            return tenant_scope(tenant_id)
        if self.principal.is_operator:
            return all_tenants_scope()
        return tenant_scope(self.principal.tenant_id)


def idempotency_key(request) -> str | None:
    """The request's Idempotency-Key header, if any; a malformed one answers 400."""
    try:
        return ids.idempotency_key(request.headers.get("Idempotency-Key"))
    except ValueError as exc:
        raise Problem(
            400,
            "validation-error",
            f"Idempotency-Key {exc}.",
            errors={"Idempotency-Key": ["1-200 printable characters."]},
        ) from exc
