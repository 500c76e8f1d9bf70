"""Streaming state equals the batch computation over the same events, in any order, with duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState, parse_event
from stream.batch import batch_raw_rfm
from stream.profile import apply_event, format_cents

START = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def event_lists(draw: st.DrawFn) -> list[dict]:
    n = draw(st.integers(min_value=1, max_value=40))
    events = []
    for i in range(n):
        customer = draw(st.sampled_from(["a", "b", "c"]))
        when = START + timedelta(minutes=draw(st.integers(0, 500_000)))
        kind = draw(st.sampled_from(["purchase", "purchase", "refund", "page_view"]))
        base = {"event_id": f"e{i}", "customer_id": customer, "event_time": when.isoformat()}
        cents = draw(st.integers(0, 10_000_000))
        amount = str(Decimal(cents) / 100)
        if kind == "purchase":
            events.append({**base, "type": "purchase", "order_id": f"o{i}", "total": amount})
        elif kind == "refund":
            events.append({**base, "type": "refund", "order_id": f"o{i}", "amount": amount})
        else:
            events.append({**base, "type": "page_view"})
    return events


@settings(max_examples=200, deadline=None)
@given(events=event_lists(), data=st.data())
def test_streaming_equals_batch_in_any_order_with_duplicates(events: list[dict], data: st.DataObject) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=20))
    delivered = data.draw(st.permutations(events + duplicates))

    states: dict[str, CustomerState] = {}
    for raw in delivered:
        event = parse_event(_json(raw))
        state = states.get(event.customer_id, CustomerState(customer_id=event.customer_id))
        states[event.customer_id], _ = apply_event(state, event, max_ids=10_000)

    expected = batch_raw_rfm(events)
    assert set(states) == set(expected)
    for customer_id, want in expected.items():
        got = states[customer_id]
        assert got.events == want.events
        assert got.orders == want.orders
        assert format_cents(got.monetary_cents) == f"{want.monetary:.2f}"
        assert got.first_purchase_at == want.first_purchase_at
        assert got.last_purchase_at == want.last_purchase_at
        assert got.duplicates == sum(1 for d in duplicates if d["customer_id"] == customer_id)


def _json(event: dict) -> str:
    import json

    return json.dumps(event)
