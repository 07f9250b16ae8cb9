"""Conditions and templates of domain packs, evaluated over an exception's view:
{"exception": projection fields, "normalized": canonical fields, "payload": redacted payload,
"policy": the policy decision (requires_approval, ...)}."""

from __future__ import annotations

import re
from typing import Any

_MISSING = object()


def lookup(view: dict[str, Any], path: str) -> Any:
    """A dotted path into the view; a bare name looks in normalized, then payload, then exception."""
    parts = path.split(".")
    if parts[0] not in view:
        for root in ("normalized", "payload", "exception"):
            found = lookup(view, f"{root}.{path}")
            if found is not _MISSING:
                return found
        return _MISSING
    value: Any = view
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def holds(condition: dict[str, Any] | None, view: dict[str, Any]) -> bool:
    """Whether every clause of the condition holds; an empty condition always does."""
    if not condition:
        return True
    if "all" in condition and not all(holds(c, view) for c in condition["all"]):
        return False
    if "any" in condition and not any(holds(c, view) for c in condition["any"]):
        return False
    if "has" in condition and any(lookup(view, f) in (_MISSING, None) for f in condition["has"]):
        return False
    field = condition.get("field")
    if field is None:
        return True
    value = lookup(view, field)
    if "exists" in condition and (value is not _MISSING and value is not None) != condition["exists"]:
        return False
    if "eq" in condition and value != condition["eq"]:
        return False
    if "ne" in condition and value == condition["ne"]:
        return False
    if "in" in condition and value not in condition["in"]:
        return False
    for op, test in (("gte", float.__ge__), ("gt", float.__gt__), ("lte", float.__le__), ("lt", float.__lt__)):
        if op in condition:
            number = _number(value)
            if number is None or not test(number, float(condition[op])):
                return False
    return True


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


def render(template: Any, view: dict[str, Any]) -> Any:
    """Fill {{ path }} placeholders in strings at any depth. A string that is exactly one placeholder
    takes the value's own type (a number stays a number); missing values render empty/None."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template.strip())
        if whole:
            value = lookup(view, whole.group(1))
            return None if value is _MISSING else value
        return _PLACEHOLDER.sub(
            lambda m: "" if (v := lookup(view, m.group(1))) is _MISSING or v is None else str(v), template
        )
    if isinstance(template, dict):
        return {key: render(value, view) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, view) for value in template]
    return template


def exception_view(exception_id: str, state: dict[str, Any], policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The view conditions and templates read: the exception's projection, its canonical fields, its
    (redacted) payload and the policy decision."""
    exception = {key: value for key, value in state.items() if key not in ("normalized", "payload")}
    exception["id"] = exception_id
    return {
        "exception": exception,
        "normalized": state.get("normalized") or {},
        "payload": state.get("payload") or {},
        "policy": policy or {},
    }
