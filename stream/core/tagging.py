"""A customer's tags at an event time, the changes between two sets of tags, and the next
time-driven boundary (the event time at which a tag would change with no new event)."""

from __future__ import annotations

from datetime import datetime

from schemas import CustomerState, CustomerTags, TagChange
from stream.core.churn import ChurnConfig, Scorer, churn_boundary
from stream.core.rfm import Cuts, RawRfmValues, RfmScore
from stream.core.rules import Rules, behaviour_type, lifecycle_stage, next_lifecycle_boundary

# the reason of a tag change made by the population's new cut points, not by the customer
RERANKED = "population"


def raw_values(state: CustomerState) -> RawRfmValues | None:
    """What population scoring ranks: purchase day, orders, cents (None before a purchase)."""
    if state.orders == 0 or state.last_purchase_at is None:
        return None
    first = state.first_purchase_at
    return RawRfmValues(last_purchase_day=int(state.last_purchase_at.timestamp() // 86_400),
                        orders=state.orders, monetary_cents=state.monetary_cents,
                        first_purchase_day=int(first.timestamp() // 86_400) if first is not None else None,
                        purchase_days=state.purchase_days or None)


def rfm_score(state: CustomerState, now: datetime, rules: Rules, cuts: Cuts | None = None) -> RfmScore | None:
    """Scores by fixed thresholds, or (population mode) by the population's cut points."""
    values = raw_values(state)
    if values is None or state.last_purchase_at is None:
        return None
    if rules.scoring.mode == "population":
        if cuts is None:
            raise ValueError("population scoring needs the population's cut points")
        return cuts.score(values)
    assert rules.scoring.fixed is not None  # validated by Scoring
    days = max(0.0, (now - state.last_purchase_at).total_seconds() / 86_400)
    return rules.scoring.fixed.score(days_since_last_purchase=days, orders=state.orders,
                                     monetary_cents=state.monetary_cents)


def compute_tags(state: CustomerState, now: datetime, rules: Rules, cuts: Cuts | None = None) -> CustomerTags:
    score = rfm_score(state, now, rules, cuts)
    stage = lifecycle_stage(rules.lifecycle, now=now, orders=state.orders,
                            first_purchase_at=state.first_purchase_at,
                            last_purchase_at=state.last_purchase_at,
                            previous_purchase_at=state.previous_purchase_at)
    return CustomerTags(
        r=score.r if score else None, f=score.f if score else None, m=score.m if score else None,
        segment=rules.segment(score) if score else None,
        value_tier=rules.value_tier(score) if score else None,
        lifecycle=stage.value,
        behaviour=behaviour_type(rules.behaviour, score, weekly_orders(state)) if score else None,
        rules_version=rules.version, as_of=now,
    )


def weekly_orders(state: CustomerState) -> dict[int, int]:
    """Orders per week over the customer's last year (as of their newest event): it changes
    only with events, so behaviour types need no time-driven boundary."""
    weeks: dict[int, int] = {}
    for bucket in state.weekly:
        if bucket[1]:
            weeks[bucket[0]] = weeks.get(bucket[0], 0) + bucket[1]
    for bucket in state.daily:
        if bucket[1]:
            weeks[bucket[0] // 7] = weeks.get(bucket[0] // 7, 0) + bucket[1]
    return weeks


def next_boundary(state: CustomerState, now: datetime, rules: Rules,
                  churn: ChurnConfig | None = None, model: Scorer | None = None) -> datetime | None:
    """When a tag would next change with no new event (recency score or lifecycle), or (with
    ``churn``) the churn score reach the alert threshold or the silence become inactivity."""
    if state.orders == 0 or state.last_purchase_at is None or state.first_purchase_at is None:
        return None
    moments = []
    fixed = rules.scoring.fixed
    if rules.scoring.mode == "fixed" and fixed is not None:
        recency = fixed.next_recency_change(state.last_purchase_at, now)
        if recency is not None:
            moments.append(recency)
    lifecycle = next_lifecycle_boundary(rules.lifecycle, now=now, orders=state.orders,
                                        first_purchase_at=state.first_purchase_at,
                                        last_purchase_at=state.last_purchase_at,
                                        previous_purchase_at=state.previous_purchase_at)
    if lifecycle is not None:
        moments.append(lifecycle)
    if churn is not None and (warning := churn_boundary(state, now, churn, model)) is not None:
        moments.append(warning)
    return min(moments) if moments else None


def tag_changes(customer_id: str, old: CustomerTags, new: CustomerTags, *, reason: str,
                event_time: datetime, version: int, event_version: int) -> list[TagChange]:
    """The changed tags, each with a deterministic id (customer, tag, events applied
    ``event_version`` and state revision ``version``: after a crash, the redo of a lost batch
    can reach a revision number again with other changes, never the pair).

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> [c.tag for c in tag_changes("c", CustomerTags(), CustomerTags(lifecycle="new", segment="Promising"),
    ...                               reason="event:purchase", event_time=t, version=3, event_version=2)]
    ['segment', 'lifecycle']
    """
    before, after = old.tag_values(), new.tag_values()
    return [
        TagChange(change_id=f"{customer_id}:{tag}:{event_version}.{version}", customer_id=customer_id, tag=tag,
                  old=before[tag], new=after[tag], reason=reason, event_time=event_time,
                  version=version, rules_version=new.rules_version, event_version=event_version)
        for tag in after if before[tag] != after[tag]
    ]
