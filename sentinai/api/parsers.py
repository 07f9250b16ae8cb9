"""The API's JSON parser: DRF's, with the nesting depth bounded at parse time.

A body nested thousands of levels deep would otherwise exhaust the interpreter's recursion limit in
the parser or in any recursive walk after it (PII redaction, validation) and answer 500.
"""

from __future__ import annotations

import io

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise _too_deep() from exc
        # Depth cannot exceed the number of opening brackets: most bodies skip the walk.
        if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and depth_exceeds(data, MAX_DEPTH):
            raise _too_deep()
        return data


def depth_exceeds(value, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _too_deep() -> ParseError:
    return ParseError(f"JSON parse error - objects and arrays nest more than {MAX_DEPTH} levels deep.")
