"""PII redaction, applied in the command API before anything is stored, published or logged.

Detected anywhere in a payload (any depth, strings inside lists too): e-mail addresses, phone
numbers, payment card numbers (known brand prefix, length and Luhn check, so ordinary long numbers
survive), IBANs (mod-97 check), national-id patterns a domain pack declares, and every field a pack
marks as PII. Redaction keeps enough shape to be useful: `j***@example.com`, `***-***-0199`,
`****1111`, `DE89****3000`, `***-**-6789`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

EMAIL = re.compile(
    r"(?<![\w.%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,4}"  # +44 20 7946 0958, +1-202-555-0199
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}"  # (202) 555-0199
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 202-555-0199
    r")(?![\w])"
)
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")

_CARD_BRANDS = (
    (re.compile(r"^4"), (13, 16, 19)),  # Visa
    (re.compile(r"^(5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)"), (16,)),  # Mastercard
    (re.compile(r"^3[47]"), (15,)),  # American Express
    (re.compile(r"^(6011|65|64[4-9])"), (16, 19)),  # Discover
    (re.compile(r"^35(2[89]|[3-8]\d)"), (16, 19)),  # JCB
    (re.compile(r"^3(0[0-5]|[689])"), (14, 16, 19)),  # Diners
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return any(p.match(digits) and len(digits) in lengths for p, lengths in _CARD_BRANDS) and luhn_valid(digits)


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _keep_last(text: str, keep: int = 4) -> str:
    """Mask every digit/letter but the last `keep` alphanumerics, keeping separators."""
    alnum = sum(c.isalnum() for c in text)
    out, seen = [], 0
    for c in text:
        if c.isalnum():
            seen += 1
            out.append(c if seen > alnum - keep else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask_card(match: re.Match) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if not is_card_number(digits):
        return text
    return "****" + digits[-4:]


def _mask_iban(match: re.Match) -> str:
    text = match.group(0)
    if not iban_valid(text):
        return text
    compact = text.replace(" ", "")
    return compact[:4] + "****" + compact[-4:]


def _mask_email(match: re.Match) -> str:
    return f"{match.group(1)}***@{match.group(2)}"


def _mask_phone(match: re.Match) -> str:
    return _keep_last(match.group(0))


@dataclass(frozen=True)
class Rules:
    """What a tenant's domain pack adds: field names whose values are PII wherever they appear, and
    national-id patterns (regular expressions) to mask."""

    fields: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern, ...] = ()

    @classmethod
    def of(cls, fields: Iterable[str] = (), patterns: Iterable[str] = ()) -> Rules:
        return cls(frozenset(f.lower() for f in fields), tuple(re.compile(p) for p in patterns))


@dataclass
class Redaction:
    value: Any
    count: int = 0
    paths: list[str] = field(default_factory=list)


_BUILT_INS = ((EMAIL, _mask_email), (IBAN, _mask_iban), (CARD, _mask_card), (PHONE, _mask_phone))
# Every built-in pattern needs an "@" (EMAIL) or a digit (the rest; `\d` as they use it, Unicode
# digits included): a string with neither - most of a payload's - skips their four scans.
_BUILT_IN_CANDIDATE = re.compile(r"[\d@]")


def redact_text(text: str, rules: Rules = Rules()) -> tuple[str, int]:
    original = text
    count = 0
    for pattern in rules.patterns:
        text, n = pattern.subn(lambda m: _keep_last(m.group(0)), text)
        count += n
    if _BUILT_IN_CANDIDATE.search(text):
        for pattern, mask in _BUILT_INS:
            text, n = pattern.subn(mask, text)
            count += n
    return text, (count if text != original else 0)


def _redact_field_value(value: Any) -> Any:
    if isinstance(value, str):
        return _keep_last(value, 2) if len(value) > 6 else "***"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "***"
    if isinstance(value, list):
        return [_redact_field_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_field_value(v) for k, v in value.items()}
    return value


def redact(value: Any, rules: Rules = Rules(), path: str = "$") -> Redaction:
    """A redacted copy of `value` (JSON-like), with how many values were masked and where."""
    result = Redaction(None)
    result.value = _walk(value, rules, path, result)
    return result


def _walk(value: Any, rules: Rules, path: str, result: Redaction) -> Any:
    if isinstance(value, str):
        text, n = redact_text(value, rules)
        if n:
            result.count += n
            result.paths.append(path)
        return text
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = f"{path}.{key}"
            if isinstance(key, str) and key.lower() in rules.fields and item is not None:
                out[key] = _redact_field_value(item)
                result.count += 1
                result.paths.append(child)
            else:
                out[key] = _walk(item, rules, child, result)
        return out
    if isinstance(value, list):
        return [_walk(item, rules, f"{path}[{i}]", result) for i, item in enumerate(value)]
    return value
