from sentinai.packs.conditions import exception_view, holds, render

VIEW = exception_view(
    "x-1",
    {
        "status": "triaged",
        "severity": "critical",
        "normalized": {"amount": 2_000_000, "reference": "T-1"},
        "payload": {"trade_id": "T-1"},
    },
    {"requires_approval": True},
)


def test_conditions():
    assert holds({}, VIEW) and holds(None, VIEW)
    assert holds({"field": "normalized.amount", "gte": 1_000_000}, VIEW)
    assert not holds({"field": "normalized.amount", "lt": 1_000_000}, VIEW)
    assert holds({"field": "policy.requires_approval", "eq": True}, VIEW)
    assert holds({"field": "exception.severity", "in": ["high", "critical"]}, VIEW)
    assert holds({"has": ["trade_id"]}, VIEW) and not holds({"has": ["payment_id"]}, VIEW)
    assert holds({"any": [{"field": "exception.status", "eq": "x"}, {"field": "amount", "gt": 5}]}, VIEW)
    assert not holds({"all": [{"field": "exception.status", "eq": "triaged"}, {"field": "nope", "exists": True}]}, VIEW)
    assert not holds({"field": "normalized.reference", "gte": 3}, VIEW), "non-numbers never compare"


def test_templates_keep_types_of_whole_placeholders():
    params = {
        "trade": "{{normalized.reference}}",
        "amount": "{{ normalized.amount }}",
        "text": "Trade {{normalized.reference}} for {{exception.id}}",
        "n": [1, "{{missing}}"],
    }
    assert render(params, VIEW) == {"trade": "T-1", "amount": 2_000_000, "text": "Trade T-1 for x-1", "n": [1, None]}
