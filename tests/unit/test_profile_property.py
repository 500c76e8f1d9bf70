"""Streaming state equals the batch computation over the same events, delivered out of order
(within the allowed lateness) and with duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState, parse_event
from stream.core.batch import batch_raw_rfm
from stream.core.dedup import Admission, DedupPolicy
from stream.core.fold import apply_event, format_cents

START = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def event_lists(draw: st.DrawFn) -> list[dict]:
    n = draw(st.integers(min_value=1, max_value=40))
    # a year, a week (many purchases share a day), or two months (purchases 30 days apart, give or take)
    span = draw(st.sampled_from([500_000, 10_000, 86_400]))
    events = []
    for i in range(n):
        customer = draw(st.sampled_from(["a", "b", "c"]))
        when = START + timedelta(minutes=draw(st.integers(0, span)))
        kind = draw(st.sampled_from(["purchase", "purchase", "refund", "page_view"]))
        base = {"event_id": f"e{i}", "customer_id": customer, "event_time": when.isoformat()}
        cents = draw(st.integers(0, 10_000_000))
        amount = str(Decimal(cents) / 100)
        if kind == "purchase":
            basket = draw(st.lists(st.sampled_from(["books", "music", "toys"]), max_size=2))
            items = [{"sku": f"s{n}", "category": c, "quantity": 1, "unit_price": "1.00"} for n, c in enumerate(basket)]
            events.append({**base, "type": "purchase", "order_id": f"o{i}", "total": amount, "items": items})
        elif kind == "refund":
            events.append({**base, "type": "refund", "order_id": f"o{i}", "amount": amount})
        else:
            events.append({**base, "type": "page_view"})
    return events


POLICY = DedupPolicy(lateness=timedelta(days=3), horizon=timedelta(days=7), max_ids=256)
LATENESS_SECONDS = int(POLICY.lateness.total_seconds())


@settings(max_examples=200, deadline=None)
@given(events=event_lists(), data=st.data())
def test_streaming_equals_batch_out_of_order_with_duplicates(events: list[dict], data: st.DataObject) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=20))
    # Each delivery is delayed by less than the lateness: sorting by (event time + delay)
    # gives every reordering that stays within the allowed lateness.
    copies = events + duplicates
    delays = data.draw(st.lists(st.integers(0, LATENESS_SECONDS - 1), min_size=len(copies),
                                max_size=len(copies)))
    delivered = [e for _, _, e in sorted(
        ((datetime.fromisoformat(e["event_time"]).timestamp() + d, i, e)
         for i, (e, d) in enumerate(zip(copies, delays, strict=True))),
        key=lambda item: (item[0], item[1]))]

    states: dict[str, CustomerState] = {}
    for raw in delivered:
        event = parse_event(_json(raw))
        state = states.get(event.customer_id, CustomerState(customer_id=event.customer_id))
        states[event.customer_id], admission = apply_event(state, event, POLICY)
        assert admission is not Admission.TOO_LATE

    expected = batch_raw_rfm(events)
    assert set(states) == set(expected)
    for customer_id, want in expected.items():
        got = states[customer_id]
        assert got.events == want.events
        assert got.orders == want.orders
        assert format_cents(got.monetary_cents) == f"{want.monetary:.2f}"
        assert got.first_purchase_at == want.first_purchase_at
        assert got.last_purchase_at == want.last_purchase_at
        assert got.purchase_days == want.purchase_days
        assert got.active_days == want.active_days
        assert got.hour_counts == want.hour_slots
        assert got.duplicates == sum(1 for d in duplicates if d["customer_id"] == customer_id)


@given(events=event_lists(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_an_event_beyond_the_lateness_is_never_counted(events: list[dict], data: st.DataObject) -> None:
    event = parse_event(_json(data.draw(st.sampled_from(events))))
    newest = event.event_time + POLICY.lateness + timedelta(seconds=data.draw(st.integers(1, 10**6)))
    state = CustomerState(customer_id=event.customer_id, last_event_at=newest, version=5)
    after, admission = apply_event(state, event, POLICY)
    assert admission is Admission.TOO_LATE
    assert (after.orders, after.monetary_cents, after.version, after.too_late) == (0, 0, 5, 1)


def _json(event: dict) -> str:
    import json

    return json.dumps(event)
