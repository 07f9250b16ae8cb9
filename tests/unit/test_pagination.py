"""Cursor decoding, the one place every list refuses a cursor it did not issue."""

import pytest
from django.core import signing

from sentinai.api import pagination
from sentinai.api.problems import Problem


def _integer_id(position: dict) -> int:
    if not isinstance(position["i"], int):
        raise TypeError("not an id")
    return position["i"]


def test_no_cursor_is_the_first_page():
    assert pagination.decode(None, _integer_id) is None
    assert pagination.decode("", _integer_id) is None


def test_an_issued_cursor_decodes_to_its_position():
    assert pagination.decode(pagination.encode({"i": 41}), _integer_id) == 41


@pytest.mark.parametrize(
    "token",
    [
        "not-a-cursor",
        signing.dumps({"i": 41}, salt="another list"),  # signed, but not by the cursor signer
        pagination.encode([41]),  # not a position
        pagination.encode({"c": 1}),  # a position parse cannot read (KeyError)
        pagination.encode({"i": "41"}),  # ... or rejects (TypeError)
    ],
)
def test_a_cursor_not_issued_or_not_readable_is_400_invalid_cursor(token):
    with pytest.raises(Problem) as raised:
        pagination.decode(token, _integer_id)
    assert (raised.value.status_code, raised.value.kind) == (400, "invalid-cursor")
    assert str(raised.value.detail) == "The cursor is not one this API issued."


def test_a_value_error_of_the_parser_is_invalid_cursor_too():
    def parse(position):
        raise ValueError("bad timestamp")

    with pytest.raises(Problem) as raised:
        pagination.decode(pagination.encode({"c": "x"}), parse)
    assert raised.value.kind == "invalid-cursor"
