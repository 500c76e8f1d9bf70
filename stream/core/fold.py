"""Incremental per-customer state: ``apply_event(state, event) -> state``, and its Redis projection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from schemas import CLICK_TYPES, CustomerState, Event, Profile, Purchase, Refund, SupportContact
from stream.core.affinity import Rule, next_best, suggestion_text
from stream.core.anomaly import with_hour
from stream.core.churn import ChurnConfig, active_day_count, risk_band
from stream.core.churn_now import stored_inputs
from stream.core.clusters import ClusterModel, behaviour_vector
from stream.core.dedup import DEFAULT_POLICY, Admission, DedupPolicy, admit, remember, session_key, with_session
from stream.core.holdout import in_holdout
from stream.core.preferences import WEIGHTS, add_interest, preferred_channel, top_categories
from stream.core.purchase import DAY_SECONDS
from stream.core.purchase_outlook import PurchaseModel
from stream.core.windows import add

HEURISTIC_MODEL = "none"  # no churn score yet (no purchase)
DEFAULT_CHURN = ChurnConfig()


def to_cents(amount: Decimal) -> int:
    """Exact cents of a money amount (half-up).

    >>> to_cents(Decimal("12.345")), to_cents(Decimal("0.1"))
    (1235, 10)
    """
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_cents(cents: int) -> str:
    """Cents as a decimal string, the form stored in Redis.

    >>> format_cents(1235), format_cents(-5), format_cents(0)
    ('12.35', '-0.05', '0.00')
    """
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def apply_event(state: CustomerState, event: Event, policy: DedupPolicy = DEFAULT_POLICY,
                judge_lateness: bool = True) -> tuple[CustomerState, Admission]:
    """Fold one event into a customer's state. Returns ``(new_state, admission)``.
    (``judge_lateness=False``: an alias's event, already admitted by the partition that owns the
    anonymous id; only a redelivery is dropped here, see ``stream/core/identity.py``.)

    A redelivered event changes only the duplicate counter, a too-late one only the late
    counter (the caller dead-letters it). Within the lateness, order does not matter:
    minimums, maximums and sums commute.

    >>> from schemas import parse_event
    >>> e = parse_event('{"type":"purchase","event_id":"e1","customer_id":"c",'
    ...                 '"event_time":"2024-01-01T00:00:00Z","order_id":"o","total":"9.99"}')
    >>> s, admission = apply_event(CustomerState(customer_id="c"), e)
    >>> s.orders, s.monetary_cents, admission.value
    (1, 999, 'applied')
    >>> s2, admission = apply_event(s, e)
    >>> s2.orders, s2.duplicates, admission.value
    (1, 1, 'duplicate')
    """
    admission = admit(state.seen_event_ids, state.last_event_at if judge_lateness else None, event.event_id,
                      event.event_time, policy)
    if admission is Admission.DUPLICATE:
        return state.model_copy(update={"duplicates": state.duplicates + 1}), admission
    if admission is Admission.TOO_LATE:
        return state.model_copy(update={"too_late": state.too_late + 1}), admission

    newest = _latest(state.last_event_at, event.event_time)
    seen, evicted = remember(state.seen_event_ids, event.event_id, event.event_time, newest, policy)
    update: dict[str, object] = {
        "version": state.version + 1,
        "revision": state.revision + 1,
        "events": state.events + 1,
        "first_seen_at": _earliest(state.first_seen_at, event.event_time),
        "last_event_at": newest,
        "seen_event_ids": seen,
        "dedup_evicted": state.dedup_evicted + evicted,
    }
    update.update(_behaviour(state, event, newest))
    update.update(_active_day(state, event.event_time, newest, policy))
    update.update(marketing_consent(state, event))
    if isinstance(event, Purchase):
        update.update(_purchase_day(state, event.event_time, newest, policy))
    return state.model_copy(update=update), admission


def marketing_consent(state: CustomerState, event: Event) -> dict[str, object]:
    """The newest stated marketing consent wins (by event time, so arrival order does not
    matter; at the same instant "no" wins): what alerts carry as ``marketing_allowed``.

    >>> from schemas import parse_event
    >>> def view(at, marketing):
    ...     return parse_event('{"type":"page_view","event_id":"e","customer_id":"c","event_time":"' + at +
    ...                        '","consent":{"marketing":' + marketing + '}}')
    >>> state = CustomerState(customer_id="c", **marketing_consent(CustomerState(customer_id="c"),
    ...                                                           view("2024-02-01T00:00:00Z", "false")))
    >>> marketing_consent(state, view("2024-01-01T00:00:00Z", "true")), state.marketing_consent
    ({}, False)
    """
    stated = event.consent.marketing if event.consent is not None else None
    if stated is None:
        return {}
    known_at = state.marketing_consent_at
    if known_at is not None and (event.event_time < known_at or (event.event_time == known_at and stated)):
        return {}
    return {"marketing_consent": stated, "marketing_consent_at": event.event_time}


def _purchase_day(state: CustomerState, at: datetime, newest: datetime, policy: DedupPolicy) -> dict[str, object]:
    """Count the purchase's day once, in any arrival order (see :func:`_count_day`)."""
    counted = state.purchase_days or state.orders  # a state from before purchase days: its orders
    total, recent = _count_day(counted, state.recent_purchase_days, at, newest, policy)
    return {"purchase_days": total, "recent_purchase_days": recent}


def _active_day(state: CustomerState, at: datetime, newest: datetime, policy: DedupPolicy) -> dict[str, object]:
    """Count the event's day once among the days with any event (see :func:`_count_day`)."""
    total, recent = _count_day(active_day_count(state), state.recent_active_days, at, newest, policy)
    return {"active_days": total, "recent_active_days": recent}


def _count_day(counted: int, recent_days: list[int], at: datetime, newest: datetime,
               policy: DedupPolicy) -> tuple[int, list[int]]:
    """A count of distinct days, exact in any arrival order: an admitted event is never more
    than the lateness before the newest event, so remembering the counted days since then is
    enough to know whether its day was counted.

    >>> from datetime import UTC
    >>> day = datetime(2024, 1, 2, 12, tzinfo=UTC)
    >>> _count_day(4, [19723, 19724], day, day, DEFAULT_POLICY)  # 2 Jan 2024 is day 19724
    (4, [19723, 19724])
    """
    day, oldest_possible = _day(at), _day(newest - policy.lateness)
    recent = [d for d in recent_days if d >= oldest_possible]
    if day in recent:
        return counted, recent
    return counted + 1, sorted([*recent, day])


def _day(moment: datetime) -> int:
    return int(moment.timestamp() // 86_400)


def starts_session(state: CustomerState, session_id: str | None) -> bool:
    """Whether an event of ``session_id`` is the customer's first in that session: not the current
    one nor one of the last few (a late event of an earlier session does not start another)."""
    return (session_id is not None and session_id != state.last_session_id
            and session_key(session_id) not in state.recent_sessions)


def starts_cart(state: CustomerState, event: Event) -> bool:
    """Whether an event is its session's first add-to-cart: a cart session, counted once in the
    cart → checkout funnel. An add-to-cart without a session is a session of its own; a late one
    of an earlier session (neither new nor the current one) is not counted again."""
    if event.type != "add_to_cart":
        return False
    if event.session_id is None or starts_session(state, event.session_id):
        return True
    return event.session_id == state.last_session_id and not state.session_carted


FUNNEL = {"page_view": "browse", "search": "browse", "product_view": "product", "wishlist_add": "product",
          "add_to_cart": "cart", "checkout_start": "checkout", "purchase": "purchase"}


def _behaviour(state: CustomerState, event: Event, newest: datetime) -> dict[str, object]:
    """Everything but the dedup bookkeeping: RFM, intervals, windows, funnel, preferences."""
    update: dict[str, object] = {}
    orders = spend = sessions = clicks = 0
    new_session = starts_session(state, event.session_id)
    if new_session and event.session_id is not None:
        sessions = 1
        update["sessions"] = state.sessions + 1
        update["last_session_id"] = event.session_id
        update["recent_sessions"] = with_session(state.recent_sessions, event.session_id)
        update["session_events"] = 1
        update["session_carted"] = event.type == "add_to_cart"
    elif event.session_id is not None:
        update["session_events"] = state.session_events + 1
        if event.type == "add_to_cart" and event.session_id == state.last_session_id:
            update["session_carted"] = True
    if event.type in CLICK_TYPES:
        clicks = 1
        update["clicks"] = state.clicks + 1
    stage = FUNNEL.get(event.type)
    if stage is not None:
        update["funnel_stage"] = stage
    elif new_session:
        update["funnel_stage"] = "browse"
    update["channel_counts"] = {**state.channel_counts,
                                event.channel: state.channel_counts.get(event.channel, 0) + 1}
    update["hour_counts"] = with_hour(state.hour_counts, event.event_time)
    interest = state.category_interest
    if isinstance(event, Purchase):
        orders, spend = 1, to_cents(event.total)
        update["orders"] = state.orders + 1
        update["monetary_cents"] = state.monetary_cents + spend
        update["first_purchase_at"] = _earliest(state.first_purchase_at, event.event_time)
        update["last_purchase_at"] = _latest(state.last_purchase_at, event.event_time)
        if state.last_purchase_at is not None and event.event_time > state.last_purchase_at:
            # Gaps are taken in arrival order; a purchase arriving late within the
            # lateness does not add a gap (its neighbours' gap already covers it).
            update["previous_purchase_at"] = state.last_purchase_at
            gap = (event.event_time - state.last_purchase_at).total_seconds() / 86_400
            count = state.interval_count + 1
            delta = gap - state.interval_mean_days
            mean = state.interval_mean_days + delta / count
            update["interval_count"] = count
            update["interval_mean_days"] = mean
            update["interval_m2"] = state.interval_m2 + delta * (gap - mean)
        for item in event.items:
            if item.category:
                interest = add_interest(interest, item.category, WEIGHTS["purchase"], event.event_time)
    elif isinstance(event, Refund):
        update["monetary_cents"] = state.monetary_cents - to_cents(event.amount)
        update["refunds"] = state.refunds + 1
        update["refund_cents"] = state.refund_cents + to_cents(event.amount)
    elif isinstance(event, SupportContact) and event.kind == "complaint":
        update["complaints"] = state.complaints + 1
        update["last_complaint_at"] = _latest(state.last_complaint_at, event.event_time)
    else:
        category = getattr(event, "category", None)
        if category and event.type in WEIGHTS:
            interest = add_interest(interest, category, WEIGHTS[event.type], event.event_time)
    if interest is not state.category_interest:
        update["category_interest"] = interest
    update["daily"], update["weekly"] = add(state.daily, state.weekly, event.event_time, newest,
                                            orders=orders, spend_cents=spend, sessions=sessions, clicks=clicks)
    return update


def to_profile(state: CustomerState, computed_at: datetime, churn: ChurnConfig = DEFAULT_CHURN,
               purchase: PurchaseModel | None = None, affinity: Sequence[Rule] = (),
               clusters: ClusterModel | None = None) -> Profile:
    """The Redis projection of a state (with the purchase model's outlook, as of the
    newer of the state's event time and the model's now, when a model is given, the
    next best categories by the population's cross-sell ``affinity`` rules, and the nearest
    behavioural cluster of ``clusters``)."""
    tags = state.tags
    vector = behaviour_vector(state) if clusters is not None else None
    cluster, distance = clusters.assign(vector) if clusters is not None and vector is not None else (None, None)
    as_of = max((t for t in (state.last_event_at, tags.as_of) if t is not None), default=None)
    return Profile(
        **purchase_fields(state.orders, state.purchase_days, state.first_purchase_at, state.last_purchase_at,
                          state.monetary_cents / 100, as_of, purchase, churn.horizon_days, tags.value_tier),
        purchase_days=state.purchase_days or None,
        customer_id=state.customer_id,
        version=state.revision,
        event_version=state.version,
        events=state.events,
        orders=state.orders,
        monetary=format_cents(state.monetary_cents),
        first_purchase_at=state.first_purchase_at,
        last_purchase_at=state.last_purchase_at,
        r=tags.r, f=tags.f, m=tags.m,
        segment=tags.segment, value_tier=tags.value_tier, lifecycle=tags.lifecycle, behaviour=tags.behaviour,
        top_categories=",".join(top_categories(state.category_interest, as_of)) if as_of else None,
        channel=preferred_channel(state.channel_counts),
        as_of_event_time=as_of,
        computed_at=computed_at,
        rules_version=tags.rules_version or "-",
        model_version=state.churn_model or HEURISTIC_MODEL,
        churn_probability=state.churn_probability,
        churn_risk=risk_band(state.churn_probability, state.churn_threshold or churn.threshold),
        churn_reasons=state.churn_reasons,
        churn_as_of=state.churn_as_of,
        churn_inputs=stored_inputs(state, state.churn_as_of, churn),
        holdout=in_holdout(state.customer_id, churn.holdout_share),
        aliases=",".join(state.aliases) or None,
        next_best_categories=suggestion_text(next_best(state.categories_bought, affinity)) if affinity else None,
        cluster=cluster, cluster_distance=distance,
        cluster_model=clusters.version if cluster is not None and clusters is not None else None,
    )


def purchase_fields(orders: int, purchase_days: int, first: datetime | None, last: datetime | None,
                    monetary: float, as_of: datetime | None, model: PurchaseModel | None,
                    horizon_days: float, value_tier: str | None = None) -> dict[str, Any]:
    """The Profile's purchase-model fields (none before a first purchase or a fitted model).
    (A state from before ``purchase_days`` existed counts its orders instead.)"""
    if model is None or orders <= 0 or first is None or last is None:
        return {}
    now_day = max(model.as_of_day, as_of.timestamp() / DAY_SECONDS if as_of else 0.0)
    outlook = model.outlook(orders, purchase_days or orders, first.timestamp() / DAY_SECONDS,
                            last.timestamp() / DAY_SECONDS, monetary, now_day, horizon_days)
    return {"p_alive": round(outlook.p_alive, 4), "purchase_churn_probability": round(outlook.p_no_purchase, 4),
            "expected_orders": round(outlook.expected_orders, 4),
            "predicted_value": round(outlook.predicted_value, 2) if outlook.predicted_value is not None else None,
            "potential": model.potential(outlook.predicted_value, value_tier),
            "purchase_model": model.version,
            "scores_as_of": datetime.fromtimestamp(max(now_day, last.timestamp() / DAY_SECONDS) * DAY_SECONDS, UTC)}
