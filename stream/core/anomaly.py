"""Abnormal-transaction risk: each purchase and refund scored against the customer's own history.

A customer's purchase amounts are summarised by a running mean and spread of their logarithm
(Welford), kept in the state: three numbers. A transaction's score is the sum of

- ``amount``: how many standard deviations its log amount lies above the customer's usual
  (only larger than usual counts). The spread is shrunk towards a prior of 0.7 (the spread of
  log basket values in retail data is typically 0.5-0.9) with the weight of four purchases,
  so that three similar purchases do not make the fourth look extreme;
- ``velocity``: 1.5 when it follows the customer's previous purchase within 10 minutes;
- ``new_channel``: 1.0 when the customer has been seen on other channels at least five times
  and never on this one;
- ``hour``: 1.5 when it falls in a 3-hour slot of the day (UTC) that holds under 2% of the
  customer's events, once they have 30, leaving out the transaction's own session so far (the
  state counts events per slot: eight numbers, and the current session's events).

A score at or above :data:`THRESHOLD` raises a ``suspicious_transaction`` alert with these
contributions as its explanation, once the customer has :data:`MIN_HISTORY` purchases. A
flagged purchase does not enter the customer's usual amounts, so one fraudulent order does not
make the next one look normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas import Alert, Contribution, CustomerState, Purchase, Refund

KIND = "suspicious_transaction"
PRIOR_SPREAD = 0.7  # of log amounts
PRIOR_WEIGHT = 4.0  # purchases' worth of belief in the prior spread
MIN_HISTORY = 3  # purchases before a customer's amounts are judged
THRESHOLD = 4.0
VELOCITY_WINDOW = timedelta(minutes=10)
VELOCITY_WEIGHT = 1.5
NEW_CHANNEL_WEIGHT = 1.0
NEW_CHANNEL_MIN_EVENTS = 5
HOUR_SLOT_HOURS = 3
HOUR_SLOTS = 24 // HOUR_SLOT_HOURS
HOUR_WEIGHT = 1.5
HOUR_MIN_EVENTS = 30
HOUR_RARE_SHARE = 0.02
VERSION = "amount-z-2"


@dataclass(frozen=True)
class Screening:
    """A transaction's score, its contributions (largest first) and whether it is flagged."""

    score: float
    contributions: tuple[tuple[str, float], ...]
    flagged: bool


def _log_amount(cents: int) -> float:
    return math.log(max(cents, 1) / 100)


def usual_spread(stats: tuple[int, float, float]) -> float:
    """The spread of the customer's log purchase amounts, shrunk towards the prior.

    >>> round(usual_spread((0, 0.0, 0.0)), 3)
    0.7
    >>> round(usual_spread((101, 3.8, 100 * 0.3 ** 2)), 3)  # a hundred purchases with spread 0.3
    0.325
    """
    n, _, m2 = stats
    return math.sqrt((m2 + PRIOR_WEIGHT * PRIOR_SPREAD ** 2) / (max(n - 1, 0) + PRIOR_WEIGHT))


def with_amount(stats: tuple[int, float, float], cents: int) -> tuple[int, float, float]:
    """Welford's update of (count, mean, sum of squared deviations) with one purchase amount."""
    n, mean, m2 = stats
    x = _log_amount(cents)
    n += 1
    delta = x - mean
    mean += delta / n
    return n, mean, m2 + delta * (x - mean)


def with_hour(counts: tuple[int, ...], at: datetime) -> tuple[int, ...]:
    """The customer's events per 3-hour slot of the day (UTC), with one more at ``at``.

    >>> with_hour((), datetime(2024, 1, 1, 4, 30, tzinfo=UTC))
    (0, 1, 0, 0, 0, 0, 0, 0)
    """
    slots = list(counts) if len(counts) == HOUR_SLOTS else [0] * HOUR_SLOTS
    slots[at.astimezone(UTC).hour // HOUR_SLOT_HOURS] += 1
    return tuple(slots)


def unusual_hour(counts: tuple[int, ...], at: datetime, own_session: int = 0) -> bool:
    """Whether ``at`` falls in a slot of the day that holds under 2% of the customer's events
    (judged once they have :data:`HOUR_MIN_EVENTS`), leaving out ``own_session``: the events of
    the transaction's own session so far, which would otherwise make a night session's purchase
    look like the customer's habit.

    >>> night, day = datetime(2024, 1, 1, 3, tzinfo=UTC), datetime(2024, 1, 1, 14, tzinfo=UTC)
    >>> usual = (0, 0, 0, 5, 20, 15, 10, 0)
    >>> unusual_hour(usual, night), unusual_hour(usual, day), unusual_hour((0, 0, 0, 0, 3, 0, 0, 0), night)
    (True, False, False)
    >>> browsed_first = (0, 4, 0, 5, 20, 15, 10, 0)  # four page views of this session at 03:00
    >>> unusual_hour(browsed_first, night), unusual_hour(browsed_first, night, own_session=4)
    (False, True)
    """
    if len(counts) != HOUR_SLOTS:
        return False
    slot = at.astimezone(UTC).hour // HOUR_SLOT_HOURS
    left_out = min(own_session, counts[slot])
    total = sum(counts) - left_out
    return total >= HOUR_MIN_EVENTS and counts[slot] - left_out < HOUR_RARE_SHARE * total


def screen(before: CustomerState, event: Purchase | Refund, cents: int) -> Screening:
    """Score a purchase (``cents`` its total) or a refund (its amount) against ``before``, the
    customer's state without it."""
    n, mean, _ = before.amount_stats
    contributions: list[tuple[str, float]] = []
    if n >= MIN_HISTORY:
        z = (_log_amount(cents) - mean) / usual_spread(before.amount_stats)
        if z > 0:
            contributions.append(("amount", round(z, 3)))
    if isinstance(event, Purchase) and before.last_purchase_at is not None \
            and timedelta(0) <= event.event_time - before.last_purchase_at <= VELOCITY_WINDOW:
        contributions.append(("velocity", VELOCITY_WEIGHT))
    channel = event.channel
    if channel is not None and not before.channel_counts.get(channel) \
            and sum(before.channel_counts.values()) >= NEW_CHANNEL_MIN_EVENTS:
        contributions.append(("new_channel", NEW_CHANNEL_WEIGHT))
    own_session = before.session_events if event.session_id is not None \
        and event.session_id == before.last_session_id else 0
    if unusual_hour(before.hour_counts, event.event_time, own_session):
        contributions.append(("hour", HOUR_WEIGHT))
    contributions.sort(key=lambda item: -item[1])
    score = round(sum(value for _, value in contributions), 3)
    return Screening(score, tuple(contributions), n >= MIN_HISTORY and score >= THRESHOLD)


def suspicious_alert(after: CustomerState, event: Purchase | Refund, cents: int, screening: Screening) -> Alert:
    """The ``suspicious_transaction`` alert of a flagged transaction (never held out: a risk
    alert is not a marketing intervention)."""
    n, mean, _ = after.amount_stats
    what = "purchase" if isinstance(event, Purchase) else "refund"
    reference = getattr(event, "order_id", None)
    reason = (f"{what} {reference or ''} of {cents / 100:.2f} scores {screening.score:.1f} (threshold {THRESHOLD:g}): "
              f"the customer's usual purchase is about {math.exp(mean):.2f} over {n} purchases")
    return Alert(
        alert_id=f"{after.customer_id}:{KIND}:{after.revision}", customer_id=after.customer_id, kind=KIND,
        severity="high" if screening.score >= 2 * THRESHOLD else "medium", score=screening.score,
        threshold=THRESHOLD, reason=reason.replace("  ", " "),
        explanation=tuple(Contribution(feature=f, contribution=c) for f, c in screening.contributions),
        event_time=event.event_time, model_version=VERSION, rules_version=after.tags.rules_version,
        segment=after.tags.segment, value_tier=after.tags.value_tier, marketing_allowed=after.marketing_consent,
    )
