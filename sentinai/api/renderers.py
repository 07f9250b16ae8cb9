"""JSON rendering with orjson (UUIDs and datetimes natively; 5-10x faster than the standard encoder
on list pages)."""

from __future__ import annotations

import decimal

import orjson
from rest_framework.renderers import BaseRenderer


def _default(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


# --- the same format written by PostgreSQL ------------------------------------------------------
# Read paths whose documents PostgreSQL builds (json_build_object) write their timestamps as
# OrjsonRenderer does with OPT_UTC_Z: UTC, "Z", and microseconds only when there are any.


def api_timestamp_sql(column: str) -> str:
    """SQL writing the timestamptz `column` as this renderer writes a datetime."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') "
        f"|| CASE WHEN date_trunc('second', {utc}) = {utc} THEN '' "
        f"ELSE to_char({utc}, '.US') END || 'Z' END"
    )


def json_object_sql(
    alias: str, fields: tuple[str, ...], *, timestamps: tuple[str, ...] = (), renames: dict[str, str] | None = None
) -> str:
    """SQL building the JSON object this renderer would write for `fields` of the row `alias`:
    each field under its name (or its `renames` entry), `timestamps` written as above."""
    renames = renames or {}

    def value(name: str) -> str:
        column = f'{alias}."{name}"'
        return api_timestamp_sql(column) if name in timestamps else column

    return "json_build_object(" + ", ".join(f"'{renames.get(f, f)}', {value(f)}" for f in fields) + ")"
