"""Base of every API view: authentication by API key, tenant authorisation, tenant-scoped transactions."""

from __future__ import annotations

from contextlib import AbstractContextManager

from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from sentinai.api.auth import ApiKeyAuthentication, Principal
from sentinai.api.problems import Problem
from sentinai.models import Tenant
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

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
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
        """The tenant named in the path, if this key may act for it. Another tenant's path answers 403
        whether or not that tenant exists; only operators can learn that one does not (404)."""
        if not self.principal.may_act_for(tenant_id):
            raise Problem(403, "forbidden", "This API key belongs to another tenant.")
        tenant = tenants.get(tenant_id)
        if tenant is None or not tenant.is_active:
            raise Problem(404, "not-found", f"No tenant {tenant_id!r}.")
        return tenant

    def scope(self, tenant_id: str | None = None) -> AbstractContextManager:
        """A transaction seeing `tenant_id`'s rows, or for an id-addressed resource with no tenant in
        the path: the caller's tenant, or every tenant for an operator key."""
        if tenant_id is not None:
            return tenant_scope(tenant_id)
        if self.principal.is_operator:
            return all_tenants_scope()
        return tenant_scope(self.principal.tenant_id)
