"""Abnormal-transaction risk: planted abnormal purchases in the generator's population are
flagged through the processor (no Kafka) with the required recall and precision; the
customer's usual amounts are Welford's statistics of log amounts."""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas import CustomerState, parse_event
from stream.core.anomaly import KIND, MIN_HISTORY, screen, with_amount
from stream.core.churn import ChurnConfig
from stream.core.dedup import DedupPolicy
from stream.core.fold import apply_event
from stream.core.processor import Processor
from stream.core.rules import load_rules
from stream.core.work import Record, Tables
from stream.io.generate import PopulationSpec, generate, inject_anomalies


def _run(events: list[dict]) -> tuple[list, Tables]:
    processor = Processor(rules=load_rules().with_scoring_mode("fixed"), churn=ChurnConfig(),
                          policy=DedupPolicy(lateness=timedelta(days=3), horizon=timedelta(days=7), max_ids=256),
                          clock=lambda: datetime.fromisoformat(events[-1]["event_time"]))
    tables, alerts = Tables(state={}, counters={}, maxima={}, index={}), []
    for start in range(0, len(events), 1000):
        records = [Record(0, e["customer_id"].encode(), json.dumps(e).encode(), "t", start + i)
                   for i, e in enumerate(events[start:start + 1000])]
        alerts += processor.process(records, tables).alerts
    return alerts, tables


def test_planted_abnormal_purchases_are_flagged_with_recall_and_precision() -> None:
    events, _ = generate(PopulationSpec(customers=400, days=365, seed=21, prefix="a"))
    mixed, planted = inject_anomalies(events, 0.3, seed=5)
    alerts, _ = _run(mixed)
    flagged = {(a.customer_id, a.event_time) for a in alerts if a.kind == KIND}
    truth = {(p["customer_id"], datetime.fromisoformat(p["event_time"])) for p in planted}
    recall, precision = len(flagged & truth) / len(truth), len(flagged & truth) / len(flagged)
    purchases = sum(e["type"] == "purchase" for e in events)
    print(f"{len(truth)} planted among {purchases} purchases: recall {recall:.3f}, precision {precision:.3f}, "
          f"{len(flagged - truth)} ordinary transactions flagged")
    assert len(truth) >= 50
    assert recall >= 0.8 and precision >= 0.5
    alert = next(a for a in alerts if a.kind == KIND and (a.customer_id, a.event_time) in truth)
    assert alert.explanation[0].feature == "amount" and alert.score is not None and alert.score >= 4
    assert not alert.holdout and "usual purchase" in alert.reason


def test_an_unusual_hour_flags_purchases_the_amount_alone_would_not() -> None:
    # Sessions around each customer's own hour; planted purchases of only 5x the median basket
    # (about 3 standard deviations of a customer's amounts: under the threshold alone), at 03:00-04:59.
    events, _ = generate(PopulationSpec(customers=300, days=365, seed=21, prefix="h", diurnal=True))
    mixed, planted = inject_anomalies(events, 0.3, seed=5, factor=5)
    alerts, _ = _run(mixed)
    found = [a for a in alerts if a.kind == KIND]
    flagged = {(a.customer_id, a.event_time) for a in found}
    truth = {(p["customer_id"], datetime.fromisoformat(p["event_time"])) for p in planted}
    recall, precision = len(flagged & truth) / len(truth), len(flagged & truth) / max(1, len(flagged))
    print(f"{len(truth)} planted at 5x: recall {recall:.3f}, precision {precision:.3f}")
    assert len(truth) >= 40 and recall >= 0.6 and precision >= 0.9
    hit = next(a for a in found if (a.customer_id, a.event_time) in truth)
    assert {"amount", "hour"} <= {c.feature for c in hit.explanation}


def test_the_population_without_planted_anomalies_raises_few_alerts() -> None:
    events, _ = generate(PopulationSpec(customers=200, days=365, seed=22, prefix="b"))
    alerts, _ = _run(events)
    purchases = sum(e["type"] == "purchase" for e in events)
    flagged = sum(a.kind == KIND for a in alerts)
    print(f"{flagged} of {purchases} ordinary purchases and refunds flagged")
    assert flagged <= 0.01 * purchases


@given(st.lists(st.integers(1, 10_000_000), min_size=1, max_size=50))
def test_usual_amounts_are_the_mean_and_variance_of_log_amounts(amounts: list[int]) -> None:
    stats = (0, 0.0, 0.0)
    for cents in amounts:
        stats = with_amount(stats, cents)
    logs = [math.log(c / 100) for c in amounts]
    assert stats[0] == len(amounts)
    assert math.isclose(stats[1], statistics.fmean(logs), abs_tol=1e-9)
    assert math.isclose(stats[2], statistics.pvariance(logs) * len(logs), rel_tol=1e-6, abs_tol=1e-6)


def test_a_purchase_is_judged_only_after_the_minimum_history() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    purchase = parse_event(json.dumps({"type": "purchase", "event_id": "e", "customer_id": "c", "order_id": "o",
                                       "total": "5000.00", "event_time": at.isoformat()}))
    state = CustomerState(customer_id="c")
    for n in range(MIN_HISTORY + 1):
        screening = screen(state, purchase, 500_000)  # type: ignore[arg-type]
        assert screening.flagged == (n >= MIN_HISTORY)
        state = state.model_copy(update={"amount_stats": with_amount(state.amount_stats, 4_500)})


def test_a_night_session_s_own_page_views_do_not_make_its_purchase_look_usual() -> None:
    state = CustomerState(customer_id="n")
    day = datetime(2024, 3, 1, 14, tzinfo=UTC)

    def fold(raw: dict) -> None:
        nonlocal state
        state = apply_event(state, parse_event(json.dumps({"customer_id": "n", **raw})))[0]

    for i in range(40):  # forty afternoon sessions, a purchase in every fourth
        at = day + timedelta(days=i)
        fold({"type": "page_view", "event_id": f"v{i}", "event_time": at.isoformat(), "session_id": f"s{i}"})
        if i % 4 == 0:
            fold({"type": "purchase", "event_id": f"p{i}", "order_id": f"o{i}", "total": "40.00",
                  "event_time": (at + timedelta(minutes=5)).isoformat(), "session_id": f"s{i}"})
    night = day + timedelta(days=41, hours=-11)  # 03:00
    for i in range(4):  # the session browses first
        fold({"type": "page_view", "event_id": f"nv{i}", "event_time": (night + timedelta(minutes=i)).isoformat(),
              "session_id": "night"})
    purchase = parse_event(json.dumps({"type": "purchase", "event_id": "np", "customer_id": "n", "order_id": "on",
                                       "total": "60.00", "event_time": (night + timedelta(minutes=9)).isoformat(),
                                       "session_id": "night"}))
    screening = screen(state, purchase, 6_000)  # type: ignore[arg-type]
    assert ("hour", 1.5) in screening.contributions
    habitual = purchase.model_copy(update={"event_time": day + timedelta(days=41, minutes=9), "session_id": "later"})
    assert "hour" not in dict(screen(state, habitual, 6_000).contributions)  # type: ignore[arg-type]
