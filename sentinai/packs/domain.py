"""Domain packs: everything domain-specific, declared in YAML, validated on load.

A pack declares exception types (required fields and their JSON types, the mapping of source fields
to the canonical model), classification and severity rules, PII fields and national-id patterns, SLA
windows per severity, policies (which tools may run without a human, when approval is required),
playbooks (match conditions and ordered steps) and tools. Agents know none of this vocabulary; they
read it from the pack.

Packs are versioned and immutable once loaded: loading a changed pack needs a new version. A tenant
binds to a pack by name (with overrides); binding materialises the pack's playbooks and tools as the
tenant's rows, and a playbook run keeps the playbook version it started with.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from django.conf import settings
from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sentinai.eventstore.events import Severity
from sentinai.kernel.cache import TTLCache
from sentinai.models import DomainPack, Tenant

JsonType = Literal["string", "number", "integer", "boolean", "object", "array"]
NAME = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"


class PackError(ValueError):
    """A pack that cannot be loaded; the message names the file, the path in it and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Model):
    """A predicate over the exception's view (exception.*, normalized.*, payload.*, policy.*).

    All given clauses must hold: `field` compared with eq / ne / in / gte / gt / lte / lt / exists,
    `has` (these fields are present), `all` / `any` (nested conditions)."""

    field: str | None = None
    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None
    exists: bool | None = None
    has: list[str] | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _needs_field(self):
        compares = any(
            v is not None for v in (self.eq, self.ne, self.in_, self.gte, self.gt, self.lte, self.lt, self.exists)
        )
        if compares and not self.field:
            raise ValueError("a comparison needs `field`")
        return self


class ExceptionType(_Model):
    description: str = ""
    required: dict[str, JsonType] = {}
    optional: dict[str, JsonType] = {}
    # canonical name -> source field (dotted path into the payload)
    mapping: dict[str, str] = {}


class Classification(_Model):
    type: str
    when: Condition


class SeverityRule(_Model):
    when: Condition | None = None
    severity: Severity


class Policies(_Model):
    # Severities at which a human must approve before tools run.
    approval_severities: list[Severity] = []
    # Tools that may run without a human; a playbook using another tool needs approval.
    auto_tools: list[str] = []


class Step(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    action: Literal["tool", "approval", "notify", "wait", "resolve", "escalate"]
    tool: str | None = None
    params: dict[str, Any] = {}
    when: Condition | None = None

    @model_validator(mode="after")
    def _tool_needs_name(self):
        if self.action in ("tool", "notify") and not self.tool:
            raise ValueError(f"a {self.action} step names its `tool`")
        if self.action == "wait" and not isinstance(self.params.get("seconds"), int | float):
            raise ValueError("a wait step needs params.seconds")
        return self


class Playbook(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    description: str = ""
    match: Condition
    priority: int = 0
    steps: list[Step]

    @field_validator("steps")
    @classmethod
    def _some_steps(cls, steps):
        if not steps:
            raise ValueError("a playbook has at least one step")
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError("step names must be unique")
        return steps


class Tool(_Model):
    kind: Literal["builtin", "http"]
    description: str = ""
    callable: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str | None = None
    headers: dict[str, str] = {}
    body: Any = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _kind_fields(self):
        if self.kind == "builtin" and not self.callable:
            raise ValueError("a builtin tool names its `callable`")
        if self.kind == "http" and not (self.url and re.match(r"^https?://", self.url)):
            raise ValueError("an http tool needs an http(s) `url`")
        return self


class Pii(_Model):
    fields: list[str] = []
    patterns: list[str] = []

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from exc
        return patterns


class Pack(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,99}$")]
    version: int = Field(ge=1)
    description: str = ""
    pii: Pii = Pii()
    exception_types: dict[str, ExceptionType]
    classification: list[Classification] = []
    severity: dict[str, list[SeverityRule]] = {}
    default_severity: Severity = "low"
    priority: dict[Severity, int] = {"critical": 1, "high": 2, "medium": 3, "low": 4}
    sla_seconds: dict[Severity, int] = {"critical": 3600, "high": 14400, "medium": 86400, "low": 259200}
    policies: Policies = Policies()
    playbooks: list[Playbook] = []
    tools: dict[str, Tool] = {}

    @model_validator(mode="after")
    def _references(self):
        types = set(self.exception_types)
        for i, rule in enumerate(self.classification):
            if rule.type not in types:
                raise ValueError(f"classification[{i}].type {rule.type!r} is not an exception type")
        for name in self.severity:
            if name not in types:
                raise ValueError(f"severity.{name} is not an exception type")
        for tool in self.policies.auto_tools:
            if tool not in self.tools:
                raise ValueError(f"policies.auto_tools names unknown tool {tool!r}")
        names = [p.name for p in self.playbooks]
        if len(set(names)) != len(names):
            raise ValueError("playbook names must be unique")
        for p in self.playbooks:
            for s in p.steps:
                if s.action in ("tool", "notify") and s.tool not in self.tools:
                    raise ValueError(f"playbook {p.name!r} step {s.name!r} uses unknown tool {s.tool!r}")
        return self


Condition.model_rebuild()


# --- loading -----------------------------------------------------------------------------------


def parse(text: str, source: str) -> Pack:
    """Validate a pack document. PackError messages read `<source>: <path>: <problem>`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PackError(f"{source}: a pack is a mapping at the top level")
    try:
        return Pack.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = ".".join(str(p) for p in error["loc"]) or "(top level)"
            problems.append(f"{source}: {path}: {error['msg']}")
        raise PackError("\n".join(problems)) from exc


def load_file(path: str | Path) -> Pack:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PackError(f"{path}: cannot read: {exc}") from exc
    return parse(text, str(path))


def _checksum(pack: Pack) -> str:
    return hashlib.sha256(
        orjson.dumps(pack.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def install(pack: Pack, source: str = "") -> tuple[DomainPack, bool]:
    """Store a pack version. The same version again is a no-op; a changed pack under a loaded version
    number is refused (versions are immutable)."""
    checksum = _checksum(pack)
    existing = DomainPack.objects.filter(name=pack.name, version=pack.version).first()
    if existing is not None:
        if existing.checksum != checksum:
            raise PackError(
                f"{source or pack.name}: version {pack.version} of pack {pack.name!r} is already loaded with "
                "different content; give the changed pack a new version"
            )
        return existing, False
    row = DomainPack.objects.create(
        name=pack.name,
        version=pack.version,
        definition=pack.model_dump(mode="json", by_alias=True),
        checksum=checksum,
        source=source,
    )
    _versions.forget()
    _latest.forget()
    return row, True


def find_pack_file(name: str) -> Path | None:
    for directory in settings.SENTINAI["DOMAIN_PACK_DIRS"]:
        for suffix in (".yaml", ".yml"):
            candidate = Path(directory) / f"{name}{suffix}"
            if candidate.exists():
                return candidate
    return None


def ensure_loaded(name: str) -> DomainPack:
    """The latest loaded version of pack `name`, loading the shipped file when none is."""
    row = DomainPack.objects.filter(name=name).order_by("-version").first()
    if row is not None:
        return row
    path = find_pack_file(name)
    if path is None:
        dirs = ", ".join(settings.SENTINAI["DOMAIN_PACK_DIRS"])
        raise PackError(f"no domain pack {name!r} is loaded and no {name}.yaml is in {dirs}")
    pack = load_file(path)
    if pack.name != name:
        raise PackError(f"{path}: declares pack {pack.name!r}, expected {name!r}")
    return install(pack, str(path))[0]


# --- what agents read --------------------------------------------------------------------------

# A pack version never changes once loaded: kept an hour. The latest version may: looked up again
# every CACHE_SECONDS.
CACHE_SECONDS = 30.0
_versions: TTLCache[Pack] = TTLCache(ttl=3600.0, maxsize=1_000)
_latest: TTLCache[int | None] = TTLCache(ttl=CACHE_SECONDS, maxsize=1_000)


def pack_version(name: str, version: int) -> Pack:
    """A loaded pack version (immutable, so cached)."""
    return _versions.get_or_load((name, version), lambda: _load_version(name, version))


def _load_version(name: str, version: int) -> Pack:
    row = DomainPack.objects.filter(name=name, version=version).values_list("definition", flat=True).first()
    if row is None:
        raise PackError(f"pack {name!r} version {version} is not loaded")
    return Pack.model_validate(row)


def latest_version(name: str) -> int:
    version = _latest.get_or_load(
        name,
        lambda: DomainPack.objects.filter(name=name).order_by("-version").values_list("version", flat=True).first(),
        keep_none=False,
    )
    if version is None:
        raise PackError(f"no domain pack {name!r} is loaded")
    return version


def tenant_pack(tenant: Tenant) -> Pack:
    """The pack version the tenant currently runs: pinned in overrides["pack_version"] or the latest."""
    version = (tenant.overrides or {}).get("pack_version") or latest_version(tenant.domain_pack)
    return pack_version(tenant.domain_pack, int(version))


# --- binding a tenant --------------------------------------------------------------------------


# A binder materialises a pack version as one app's rows for a tenant (tools_app: tool rows,
# playbooks_app: playbooks and steps) and says how many it created. Apps register theirs in
# AppConfig.ready(), so the core knows no app's tables.
Binder = Callable[[Tenant, Pack, int], dict[str, int]]
_binders: dict[str, Binder] = {}


def register_binder(name: str, binder: Binder) -> None:
    _binders[name] = binder


def bind(tenant: Tenant) -> dict[str, int]:
    """Materialise the tenant's pack version as its playbook and tool rows (idempotent), applying the
    tenant's overrides. Rows of older versions stay for the runs that use them, inactive."""
    from sentinai.tenancy.scope import tenant_scope

    row = ensure_loaded(tenant.domain_pack)
    version = int((tenant.overrides or {}).get("pack_version") or row.version)
    pack = pack_version(tenant.domain_pack, version)
    created: dict[str, int] = {}
    with tenant_scope(tenant.id), transaction.atomic():
        for binder in _binders.values():
            created.update(binder(tenant, pack, version))
    return created


# --- pure functions over a pack (what the agents apply) -----------------------------------------

_JSON_TYPES = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _get(payload: dict[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def validate(pack: Pack, exception_type: str | None, payload: dict[str, Any]) -> list[str]:
    """Why the payload is invalid for the pack (empty: valid). Fields the pack marks as PII are
    checked for presence only: redaction has already replaced their values."""
    if exception_type is None:
        return []
    spec = pack.exception_types.get(exception_type)
    if spec is None:
        return [f"unknown exception type {exception_type!r} for domain pack {pack.name!r} v{pack.version}"]
    pii_fields = {f.lower() for f in pack.pii.fields}
    reasons = []
    for field, json_type in {**spec.required, **spec.optional}.items():
        value = _get(payload, field)
        if value is None:
            if field in spec.required:
                reasons.append(f"payload.{field} is required for {exception_type}")
            continue
        if field.split(".")[-1].lower() in pii_fields:
            continue
        allowed = _JSON_TYPES[json_type]
        if isinstance(value, bool) and json_type in ("number", "integer"):
            allowed = ()
        if not isinstance(value, allowed):
            reasons.append(f"payload.{field} must be a {json_type}, got {type(value).__name__}")
    return reasons


def normalize(pack: Pack, exception_type: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    """The canonical fields of the exception, mapped from the payload by its type's mapping."""
    spec = pack.exception_types.get(exception_type or "")
    if spec is None:
        return {}
    normalized = {}
    for canonical, source in spec.mapping.items():
        value = _get(payload, source)
        if value is not None:
            normalized[canonical] = value
    return normalized


def infer_type(pack: Pack, view: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The first classification rule that holds: (type, rules matched)."""
    from sentinai.packs.conditions import holds

    for index, rule in enumerate(pack.classification):
        if holds(rule.when.model_dump(mode="json", by_alias=True, exclude_none=True), view):
            return rule.type, [f"classification[{index}]"]
    return None, []


def severity_for(pack: Pack, exception_type: str | None, view: dict[str, Any]) -> tuple[str, list[str]]:
    from sentinai.packs.conditions import holds

    for index, rule in enumerate(pack.severity.get(exception_type or "", [])):
        condition = rule.when.model_dump(mode="json", by_alias=True, exclude_none=True) if rule.when else None
        if holds(condition, view):
            return rule.severity, [f"severity.{exception_type}[{index}]"]
    return pack.default_severity, ["default_severity"]
