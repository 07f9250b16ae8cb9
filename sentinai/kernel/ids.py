"""Identifiers on the hot path are canonical UUID strings ("6b1f6c4e-3f0a-4c39-..."), not uuid.UUID
objects: a batch handles thousands of ids, and parsing, formatting, hashing and comparing UUID objects
cost a fifth of a worker's time. The database columns stay `uuid`; SQL casts where needed."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_id() -> str:
    return str(uuid.uuid4())


def parse(value: Any) -> str:
    """The canonical string of a UUID given as a UUID or a string; ValueError when it is not one."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return value
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _format(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def uuid5(namespace: uuid.UUID, name: str) -> str:
    """str(uuid.uuid5(namespace, name)), computed without building UUID objects."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return _format(digest.hex())


def xor(value: str, mask: int) -> str:
    """The id `value` XOR a 128-bit mask, as a canonical string."""
    return _format(f"{int(value.replace('-', ''), 16) ^ mask:032x}")


def idempotency_key(value: str | None) -> str | None:
    """A client-given Idempotency-Key (HTTP header, Kafka message header), stripped; ValueError unless
    1-200 printable characters."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 200 or not value.isprintable():
        raise ValueError("must be 1-200 printable characters")
    return value
