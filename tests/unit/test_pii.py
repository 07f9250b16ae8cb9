"""PII redaction (pure): what is masked, what survives, and the shape that remains."""

from sentinai.packs.pii import Rules, iban_valid, is_card_number, luhn_valid, redact, redact_text


def test_emails_phones_cards_and_ibans_are_masked_keeping_their_shape():
    text = (
        "mail jane.doe@example.com, call +1-202-555-0199 or (202) 555-0123, "
        "card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00"
    )
    masked, count = redact_text(text)
    assert count == 5
    for raw in ("jane.doe@example.com", "202-555-0199", "555-0123", "4111 1111 1111 1111", "0532 0130 00"):
        assert raw not in masked
    assert "j***@example.com" in masked and "****1111" in masked and "DE89****3000" in masked
    assert "-0199" in masked and "0123" in masked


def test_ordinary_numbers_dates_and_references_survive():
    for text in (
        "1234567890123456",
        "4111111111111112",
        "2026-11-25",
        "T-0000001",
        "amount 1000000",
        "ISIN US0378331005",
    ):
        assert redact_text(text) == (text, 0), text


def test_card_checks():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert is_card_number("5500005555555559") and is_card_number("378282246310005")
    assert not is_card_number("1234567812345670")  # Luhn-valid but no card brand
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_every_depth_lists_pack_fields_and_national_id_patterns():
    rules = Rules.of(fields=["patient_name", "member_id"], patterns=[r"\b\d{3}-\d{2}-\d{4}\b"])
    payload = {
        "claim": {"patient_name": "Jane Roe", "member_id": 123456789, "notes": ["ssn 123-45-6789", {"x": "a@b.io"}]},
        "amount": 10,
        "ok": True,
    }
    result = redact(payload, rules)
    value = result.value
    assert value["claim"]["patient_name"] != "Jane Roe" and value["claim"]["member_id"] == "***"
    assert value["claim"]["notes"][0] == "ssn ***-**-6789"
    assert value["claim"]["notes"][1]["x"] == "a***@b.io"
    assert value["amount"] == 10 and value["ok"] is True
    assert set(result.paths) == {"$.claim.patient_name", "$.claim.member_id", "$.claim.notes[0]", "$.claim.notes[1].x"}
    assert payload["claim"]["patient_name"] == "Jane Roe", "the input is not modified"


def _redact_text_scanning_everything(text: str) -> tuple[str, int]:
    """redact_text without its digit-or-@ shortcut: every built-in pattern scans every string."""
    from sentinai.packs import pii

    original, count = text, 0
    for pattern, mask in pii._BUILT_INS:
        text, n = pattern.subn(mask, text)
        count += n
    return text, (count if text != original else 0)


def test_the_shortcut_for_strings_without_digits_or_at_masks_exactly_what_a_full_scan_masks():
    samples = [
        "SETTLEMENT_FAILURE",
        "EUR",
        "jane.doe@example.com",
        "no digits at all, just words",
        "call +1-202-555-0199",
        "card 4111 1111 1111 1111",
        "iban DE89 3704 0044 0532 0130 00",
        # Arabic-Indic and fullwidth digits: `\d` matches them, so the shortcut must not skip them.
        "+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨",
        "٢٠٢-٥٥٥-٠١٩٩",
        "２０２-５５５-０１９９",
        "४१११ ११११ ११११ ११११",
        "",
        "@",
    ]
    for text in samples:
        assert redact_text(text) == _redact_text_scanning_everything(text), text
    assert redact_text("٢٠٢-٥٥٥-٠١٩٩")[1] == 1, "a phone number in Arabic-Indic digits is still masked"
