"""Marketing consent: the newest stated flag (by event time) is the customer's, in any arrival
order, and every alert says whether marketing contact is allowed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState, parse_event
from stream.core.churn import ChurnConfig
from stream.core.dedup import DedupPolicy
from stream.core.fold import apply_event
from stream.core.processor import Processor
from stream.core.rules import load_rules
from stream.core.sweep import TICK_KEY
from stream.core.work import Record, Tables

START = datetime(2024, 1, 1, tzinfo=UTC)
POLICY = DedupPolicy(lateness=timedelta(days=30), horizon=timedelta(days=60), max_ids=256)


def _event(index: int, hours: int, marketing: bool | None, kind: str = "page_view") -> dict:
    event = {"type": kind, "event_id": f"e{index}", "customer_id": "c",
             "event_time": (START + timedelta(hours=hours)).isoformat()}
    if kind == "purchase":
        event |= {"order_id": f"o{index}", "total": "80.00"}
    return event | ({"consent": {"marketing": marketing}} if marketing is not None else {})


@settings(max_examples=200, deadline=None)
@given(stated=st.lists(st.tuples(st.integers(0, 48), st.sampled_from([True, False, None])), min_size=1,
                       max_size=12), order=st.randoms(use_true_random=False))
def test_the_newest_stated_consent_wins_in_any_arrival_order(stated: list[tuple[int, bool | None]],
                                                             order: object) -> None:
    events = [_event(i, hours, marketing) for i, (hours, marketing) in enumerate(stated)]
    shuffled = list(events)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    state = CustomerState(customer_id="c")
    for event in shuffled:
        state, _ = apply_event(state, parse_event(json.dumps(event)), POLICY)
    said = [(hours, marketing) for hours, marketing in stated if marketing is not None]
    if not said:
        assert state.marketing_consent is None
        return
    newest = max(hours for hours, _ in said)
    # the batch answer: at the newest instant anyone stated it, "no" if any event said no
    assert state.marketing_consent == all(marketing for hours, marketing in said if hours == newest)
    assert state.marketing_consent_at == START + timedelta(hours=newest)


def test_alerts_say_whether_marketing_contact_is_allowed() -> None:
    tables = Tables(state={}, counters={}, maxima={}, index={}, erasures={})
    processor = Processor(rules=load_rules().with_scoring_mode("fixed"), policy=POLICY,
                          churn=ChurnConfig(cooldown_days=0), clock=lambda: START + timedelta(days=30))
    events = [_event(1, 0, True, "purchase"), _event(2, 24 * 10, None, "purchase"),
              _event(3, 24 * 20, False, "page_view")]
    processor.process([Record(0, b"c", json.dumps(e).encode(), "t", i) for i, e in enumerate(events)], tables)
    state = CustomerState.model_validate_json(tables.state["c"])
    assert state.marketing_consent is False
    # silence raises churn warnings at their time, with no event of the customer
    assert state.next_boundary_at is not None
    tick = json.dumps({"now": (state.next_boundary_at + timedelta(days=400)).isoformat()}).encode()
    effects = processor.process([Record(0, TICK_KEY, tick, "t", 9)], tables)
    assert effects.alerts, "a silent customer is warned about"
    assert all(alert.marketing_allowed is False for alert in effects.alerts)
