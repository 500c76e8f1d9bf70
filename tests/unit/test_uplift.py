"""Control groups and the uplift report: a closed-loop simulation on the generator's population,
driven through the processor (no Kafka). Alerts of treated customers are followed, with a planted
probability, by an intervention purchase a few days later; held-out customers get none. The
report's interval must contain the planted effect."""

from __future__ import annotations

import heapq
import json
import random
from collections import defaultdict
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas import AlertOutcome
from stream.core.churn import ChurnConfig
from stream.core.dedup import DedupPolicy
from stream.core.holdout import in_holdout
from stream.core.processor import Processor
from stream.core.rules import load_rules
from stream.core.sweep import TICK_KEY
from stream.core.uplift import Group, KindUplift, uplift_report
from stream.core.work import Record, Tables
from stream.io.generate import PopulationSpec, generate

HORIZON = 90
KIND = "churn_risk"


def simulate(effect: float, customers: int, seed: int) -> tuple[list[AlertOutcome], float]:
    """Replay a generated year day by day through the processor. Every treated ``churn_risk``
    alert is followed, with probability ``effect``, by a purchase 1-20 days later. Returns the
    outcomes and the planted uplift on the treated: the share of the treated customers' first
    resolved alerts that converted only because of their own intervention."""
    spec = PopulationSpec(customers=customers, days=365, seed=seed, prefix=f"u{seed}")
    events, _ = generate(spec)
    config = ChurnConfig(horizon_days=HORIZON, holdout_share=0.5)
    processor = Processor(rules=load_rules().with_scoring_mode("fixed"), churn=config,
                          policy=DedupPolicy(lateness=timedelta(0), horizon=timedelta(days=7), max_ids=256),
                          clock=lambda: datetime.fromisoformat(events[-1]["event_time"]))
    tables = Tables(state={}, counters={}, maxima={}, index={})
    rng = random.Random(seed)
    natural: dict[str, list[datetime]] = defaultdict(list)  # each customer's generated purchases
    for event in events:
        if event["type"] == "purchase":
            natural[event["customer_id"]].append(datetime.fromisoformat(event["event_time"]))
    queue: list[tuple[str, int, dict]] = []  # (event time, tie-breaker, event): natural and injected
    for number, event in enumerate(events):
        heapq.heappush(queue, (event["event_time"], number, event))
    outcomes: list[AlertOutcome] = []
    converted_by_intervention: set[str] = set()  # alert ids
    day = datetime.fromisoformat(events[0]["event_time"]).replace(hour=0, minute=0, second=0, microsecond=0)
    offset = 0
    while queue:
        day += timedelta(days=1)
        batch = []
        while queue and datetime.fromisoformat(queue[0][0]) < day:
            batch.append(heapq.heappop(queue)[2])
        records = [Record(0, e["customer_id"].encode(), json.dumps(e).encode(), "t", offset + i)
                   for i, e in enumerate(batch)]
        records.append(Record(0, TICK_KEY, json.dumps({"now": day.isoformat()}).encode(), "t", offset + len(batch)))
        offset += len(records)
        effects = processor.process(records, tables)
        outcomes += effects.outcomes
        for alert in effects.alerts:
            if alert.kind != KIND or alert.holdout:
                continue
            if rng.random() >= effect:
                continue
            at = alert.event_time + timedelta(days=rng.uniform(1, 20))
            if not any(alert.event_time < p <= alert.event_time + timedelta(days=HORIZON)
                       for p in natural[alert.customer_id]):
                converted_by_intervention.add(alert.alert_id)
            intervention = {"type": "purchase", "event_id": f"x-{alert.alert_id}", "customer_id": alert.customer_id,
                            "order_id": f"x-{alert.alert_id}", "total": "20.00", "event_time": at.isoformat()}
            heapq.heappush(queue, (intervention["event_time"], len(events) + len(queue), intervention))
    first: dict[str, AlertOutcome] = {}
    for outcome in outcomes:
        if outcome.kind == KIND and not outcome.holdout and outcome.customer_id not in first:
            first[outcome.customer_id] = outcome  # outcomes resolve in event-time order per customer
    planted = sum(o.alert_id in converted_by_intervention for o in first.values()) / len(first)
    return outcomes, planted


def test_the_uplift_interval_contains_the_planted_effect() -> None:
    outcomes, planted = simulate(effect=0.4, customers=550, seed=11)
    [report] = uplift_report(outcomes, kinds=[KIND])
    low, high = report.interval  # type: ignore[misc]
    print(f"planted {planted:.3f}, reported {report.uplift:.3f} [{low:.3f}, {high:.3f}], "
          f"treated {report.treated}, held out {report.holdout}")
    assert report.treated.alerts >= 100 and report.holdout.alerts >= 100
    assert low <= planted <= high
    assert low > 0  # an effect this large is detected
    # every held-out alert belongs to a held-out customer, and only those are held out
    assert all(o.holdout == in_holdout(o.customer_id, 0.5) for o in outcomes)


def test_without_an_intervention_the_interval_contains_zero() -> None:
    outcomes, planted = simulate(effect=0.0, customers=250, seed=12)
    [report] = uplift_report(outcomes, kinds=[KIND])
    low, high = report.interval  # type: ignore[misc]
    assert planted == 0 and low <= 0 <= high


@given(st.dictionaries(st.integers(0, 40), st.tuples(st.booleans(), st.booleans()), max_size=40), st.randoms())
def test_each_customers_first_alert_counts_once_in_any_order(rows: dict[int, tuple[bool, bool]],
                                                             rnd: random.Random) -> None:
    # alert n: customer n % 7 (held out or not: a property of the customer), raised on day n
    start = datetime.fromisoformat("2024-05-01T00:00:00+00:00")
    outcomes = [AlertOutcome(alert_id=f"c{n % 7}:{KIND}:{n}", customer_id=f"c{n % 7}", kind=KIND,
                             holdout=(n % 7) % 2 == 1, alerted_at=start + timedelta(days=n),
                             resolved_at=start + timedelta(days=n + 1), converted=bought, horizon_days=HORIZON)
                for n, (bought, _) in rows.items()]
    redelivered = outcomes + [o for o, (_, again) in zip(outcomes, rows.values(), strict=True) if again]
    rnd.shuffle(redelivered)
    report = {row.kind: row for row in uplift_report(redelivered)}
    firsts = {}
    for outcome in sorted(outcomes, key=lambda o: o.alerted_at):
        firsts.setdefault(outcome.customer_id, outcome)
    if not firsts:
        assert report == {}
        return
    for group, held in ((report[KIND].treated, False), (report[KIND].holdout, True)):
        mine = [o for o in firsts.values() if o.holdout == held]
        assert group == Group(len(mine), sum(o.converted for o in mine))


def test_an_empty_group_has_no_uplift() -> None:
    row = KindUplift(KIND, Group(10, 4), Group(0, 0), 0.95)
    assert row.uplift is None and row.interval is None and row.to_dict()["holdout"]["rate"] is None
