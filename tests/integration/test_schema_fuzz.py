"""Schemathesis against /api/schema/: generated requests for every operation, checked for 5xx and for
responses that contradict the schema (status codes, content types, bodies)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from config.wsgi import application
from sentinai.api import auth
from sentinai.tenancy import admission, tenants
from sentinai.tenancy.services import api_key_create, tenant_create_or_update

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
TENANT = "fuzz"


@pytest.fixture(params=["tenant", "operator"])
def key(request, django_db_blocker):
    """A tenant's key with every tenant scope, and an operator's (of the same tenant) with all four."""
    tenant, _ = tenant_create_or_update(tenant_id=TENANT, domain_pack="finance", rate_per_second=10_000, burst=20_000)
    admission.backend().reset(TENANT)
    auth.forget_cached_keys()
    tenants.forget()
    scopes = ("ingest", "read", "approve") + (("operate",) if request.param == "operator" else ())
    return api_key_create(tenant=tenant, scopes=scopes, name=f"fuzz-{request.param}")[1]


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, key):
    def negative(location: ParameterLocation) -> bool:
        info = case.meta.components.get(location) if case.meta else None
        return info is not None and not info.mode.is_positive

    # Aim most requests at a tenant that exists and send a valid key, so they reach the handlers -
    # except where the case's invalid part may be that very parameter or header.
    if (
        not negative(ParameterLocation.PATH)
        and "tenant_id" in (case.path_parameters or {})
        and hash(str(case.path_parameters)) % 4
    ):
        case.path_parameters["tenant_id"] = TENANT
    headers = (
        {}
        if negative(ParameterLocation.HEADER) or "Authorization" in (case.headers or {})
        else {"Authorization": f"Bearer {key}"}
    )
    # Not checked: that every schema-valid request is accepted. Some are rightly refused by business
    # validation (an unknown tool, a forged cursor: 400), which a schema cannot express.
    case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
