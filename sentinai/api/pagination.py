"""Keyset pagination with signed cursors: constant time at any depth (no OFFSET, no COUNT), and a
cursor a client altered or invented is refused with 400."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.core import signing

from sentinai.api.problems import Problem

SALT = "sentinai.api.cursor"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode(position: dict[str, Any]) -> str:
    return signing.dumps(position, salt=SALT, compress=True)


def decode(token: str) -> dict[str, Any]:
    try:
        position = signing.loads(token, salt=SALT)
    except signing.BadSignature as exc:
        raise Problem(400, "invalid-cursor", "The cursor is not one this API issued.") from exc
    if not isinstance(position, dict):
        raise Problem(400, "invalid-cursor", "The cursor is not one this API issued.")
    return position


def next_url(request, position: dict[str, Any] | None) -> str | None:
    if position is None:
        return None
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params["cursor"] = encode(position)
    return request.build_absolute_uri(request.path) + "?" + urlencode(params)
