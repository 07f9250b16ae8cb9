"""Keyset pagination with signed cursors: constant time at any depth (no OFFSET, no COUNT), and a
cursor a client altered or invented is refused with 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.core import signing

from sentinai.api.problems import Problem

SALT = "sentinai.api.cursor"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")


def encode(position: dict[str, Any]) -> str:
    return signing.dumps(position, salt=SALT, compress=True)


def decode(token: str | None, parse: Callable[[dict[str, Any]], T]) -> T | None:
    """The position a cursor of this API points at, read by `parse`; None without a cursor.

    The signature proves the API issued the cursor, but not that the list reading it issued it (every
    list shares the salt), so `parse` checks the shape and raises KeyError, TypeError or ValueError on
    one it does not know: refused like a forged cursor, with 400 invalid-cursor.
    """
    if not token:
        return None
    try:
        position = signing.loads(token, salt=SALT)
        if not isinstance(position, dict):
            raise TypeError(f"cursor position is a {type(position).__name__}")
        return parse(position)
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise Problem(400, "invalid-cursor", "The cursor is not one this API issued.") from exc


def next_url(request, position: dict[str, Any] | None) -> str | None:
    if position is None:
        return None
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params["cursor"] = encode(position)
    return request.build_absolute_uri(request.path) + "?" + urlencode(params)
