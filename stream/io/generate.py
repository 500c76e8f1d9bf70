"""A realistic synthetic customer population, seeded, with a hidden churn process.

Each customer has a purchase rate (gamma-distributed: most buy rarely, a few often), a
basket size (log-normal), favourite categories, a preferred channel, and maybe a seasonal
pattern (shopping concentrated before year end). Browsing sessions outnumber purchases and
drop off along the funnel (product view -> cart -> checkout -> purchase). Some refunds and
support contacts happen at a base rate.

The hidden churn process: a churner's activity decays over a few weeks before a churn date,
with more complaints and refunds in that window, and then stops for good. The ground truth
(who churns and when) is written separately, for evaluating churn detection.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

CATEGORIES = ("books", "music", "electronics", "home", "garden", "toys", "fashion", "beauty",
              "sports", "grocery")
CHANNELS = ("web", "app", "store")


@dataclass(frozen=True)
class Truth:
    """What the generator knows about a customer and the processor must discover."""

    customer_id: str
    signup_at: str
    purchases_per_30d: float
    mean_basket: float
    seasonal: bool
    churns: bool
    decay_starts_at: str | None
    churn_at: str | None
    group: str | None = None  # the planted behaviour group (``--behaviour-groups``)


@dataclass(frozen=True)
class BehaviourGroup:
    """A planted behaviour: purchases per 30 days, typical basket, share of sessions that buy,
    and the channel most sessions use."""

    purchases_per_30d: float
    basket: float
    conversion: float
    channel: str


# Four groups the seeds name: high-frequency low-value, low-frequency high-value, browsers who
# seldom buy, and regulars in between; each customer's rate and basket vary around the group's.
BEHAVIOUR_GROUPS = {
    "frequent_small": BehaviourGroup(6.0, 14.0, 0.4, "app"),
    "rare_large": BehaviourGroup(0.6, 220.0, 0.3, "store"),
    "browser": BehaviourGroup(0.5, 40.0, 0.05, "web"),
    "regular": BehaviourGroup(1.5, 55.0, 0.2, "web"),
}


INCIDENT_SIGNALS = ("conversion", "checkout", "basket_value", "refund_rate", "invalid")
DIURNAL_SPREAD_HOURS = 2.0


@dataclass(frozen=True)
class Incident:
    """For ``days`` from ``start``, one population signal is multiplied by ``factor``:
    ``conversion`` (the chance that a session buys), ``checkout`` (the chance that a filled cart
    goes to checkout, and so buys), ``basket_value`` (prices) or ``refund_rate`` (the chance that
    a purchase is refunded). ``invalid`` is a producer fault instead: that share (``factor``, at
    most 1) of the events is written with an unreadable ``event_time`` (``corrupt``), so the
    pipeline dead-letters them."""

    signal: str
    factor: float
    start: datetime
    days: int

    @classmethod
    def parse(cls, text: str) -> Incident:
        """
        >>> Incident.parse("conversion:0.5:2024-06-01:14").start.isoformat()
        '2024-06-01T00:00:00+00:00'
        >>> Incident.parse("teleport:2:2024-06-01:1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --incident: the signal must be one of conversion, checkout, ..., invalid (got 'teleport')
        """
        form = "SIGNAL:FACTOR:YYYY-MM-DD:DAYS, e.g. conversion:0.5:2024-06-01:14"
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"--incident: expected {form} (got {text!r})")
        signal, factor, start, days = parts
        if signal not in INCIDENT_SIGNALS:
            raise ValueError(f"--incident: the signal must be one of {', '.join(INCIDENT_SIGNALS)} (got {signal!r})")
        try:
            incident = cls(signal, float(factor), datetime.fromisoformat(start).replace(tzinfo=UTC), int(days))
        except ValueError:
            raise ValueError(f"--incident: expected {form} (got {text!r})") from None
        if incident.factor < 0 or incident.days < 1:
            raise ValueError(f"--incident: the factor must be >= 0 and the days >= 1 (got {text!r})")
        if signal == "invalid" and incident.factor > 1:
            raise ValueError(f"--incident: an invalid share must be at most 1 (got {text!r})")
        return incident

    def covers(self, when: datetime) -> bool:
        return self.start <= when < self.start + timedelta(days=self.days)

    def factor_for(self, signal: str, when: datetime) -> float:
        return self.factor if signal == self.signal and self.covers(when) else 1.0


@dataclass(frozen=True)
class PopulationSpec:
    customers: int = 1000
    days: int = 365
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    seed: int = 42
    churn_share: float = 0.3
    seasonal_share: float = 0.15
    decay_days: int = 28
    prefix: str = "gen"
    incident: Incident | None = None
    behaviour_groups: bool = False  # plant BEHAVIOUR_GROUPS (each customer in one, by its own draw)
    diurnal: bool = False  # sessions around each customer's own hour of the day (08-22 UTC), not evenly
    # arrivals at a constant rate over the whole period and a constant churn hazard (churn_share of
    # customers churn within a year of signing up), instead of a cohort at the start and churn dates
    # spread over the period: with seasonal_share 0 a population whose rates do not change
    steady: bool = False

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 1:
            raise ValueError("customers and days must be at least 1")
        if not 0 <= self.churn_share <= 1 or not 0 <= self.seasonal_share <= 1:
            raise ValueError("churn_share and seasonal_share must be between 0 and 1")


@dataclass(frozen=True)
class _Customer:
    truth: Truth
    signup: datetime
    purchase_rate: float  # purchases per day at full activity
    basket_mu: float
    favourites: tuple[str, ...]
    channel: str
    decay_start: datetime | None
    churn_at: datetime | None
    conversion: float = 0.25  # the chance that a session buys


def generate(spec: PopulationSpec) -> tuple[list[dict[str, Any]], list[Truth]]:
    """Events (in event-time order) and the ground truth of every customer.

    >>> events, truth = generate(PopulationSpec(customers=20, days=60, seed=1))
    >>> events == generate(PopulationSpec(customers=20, days=60, seed=1))[0]
    True
    >>> len(truth), all(a["event_time"] <= b["event_time"] for a, b in zip(events, events[1:], strict=False))
    (20, True)
    """
    rng = random.Random(spec.seed)
    customers = [_make_customer(rng, spec, i) for i in range(spec.customers)]
    events: list[dict[str, Any]] = []
    for customer in customers:
        events.extend(_customer_events(random.Random(rng.random()), spec, customer))
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return events, [c.truth for c in customers]


def corrupt(events: list[dict[str, Any]], incident: Incident, seed: int = 0) -> int:
    """An ``invalid`` incident, a producer fault: that share of the events in its window lose
    their event time, in place (they stay where they were sent; their own random stream, so the
    population is the same). Applied last, to the events as written. Returns how many.

    >>> events, _ = generate(PopulationSpec(customers=20, days=60, seed=1))
    >>> corrupt(events, Incident("invalid", 1.0, datetime(2024, 1, 1, tzinfo=UTC), 60)) == len(events)
    True
    """
    rng, corrupted = random.Random(f"{seed}-invalid"), 0
    for event in events:
        if incident.covers(datetime.fromisoformat(event["event_time"])) and rng.random() < incident.factor:
            event["event_time"] = "unknown"
            corrupted += 1
    return corrupted


def truth_rows(truth: list[Truth]) -> Iterator[dict[str, Any]]:
    for row in truth:
        yield asdict(row)


def _make_customer(rng: random.Random, spec: PopulationSpec, index: int) -> _Customer:
    end = spec.start + timedelta(days=spec.days)
    if spec.steady:
        signup = spec.start + timedelta(seconds=rng.randrange(max(1, spec.days * 86_400)))
    else:
        # Customers keep arriving: half are there at the start, the rest sign up over the period.
        signup = spec.start if rng.random() < 0.5 else spec.start + timedelta(
            seconds=rng.randrange(max(1, int(spec.days * 0.7 * 86_400))))
    purchase_rate = rng.gammavariate(0.9, 1 / 0.9) / 30  # mean one purchase a month, heavy tail
    basket_mu = rng.gauss(math.log(45), 0.5)
    favourites = tuple(rng.sample(CATEGORIES, rng.randint(1, 3)))
    channel = rng.choices(CHANNELS, weights=(5, 4, 1))[0]
    seasonal = rng.random() < spec.seasonal_share
    churns = rng.random() < spec.churn_share
    decay_start = churn_at = None
    earliest_churn = signup + timedelta(days=spec.decay_days + 30)
    if spec.steady:
        # the same chance to leave on every day of a customer's life: churn_share of them within a year
        hazard = -math.log(max(1e-9, 1 - spec.churn_share)) / 365
        lifetime_days = rng.expovariate(hazard) if hazard > 0 else math.inf
        churns = lifetime_days < (end - signup).total_seconds() / 86_400
        if churns:
            churn_at = signup + timedelta(days=lifetime_days)
            decay_start = max(signup, churn_at - timedelta(days=spec.decay_days))
    elif churns and earliest_churn < end:
        churn_at = earliest_churn + timedelta(
            seconds=rng.randrange(max(1, int((end - earliest_churn).total_seconds()))))
        decay_start = churn_at - timedelta(days=spec.decay_days)
    else:
        churns = False
    group, conversion = None, 0.25
    if spec.behaviour_groups:
        # its own stream, so the population's other draws stay those of a run without groups
        own = random.Random(f"{spec.seed}-group-{index}")
        group = own.choice(sorted(BEHAVIOUR_GROUPS))
        planted = BEHAVIOUR_GROUPS[group]
        purchase_rate = planted.purchases_per_30d * math.exp(own.gauss(0, 0.25)) / 30
        basket_mu = math.log(planted.basket) + own.gauss(0, 0.2)
        conversion, channel = planted.conversion, planted.channel
    truth = Truth(
        customer_id=f"{spec.prefix}-{index + 1:06d}",
        signup_at=signup.isoformat(),
        purchases_per_30d=round(purchase_rate * 30, 4),
        mean_basket=round(math.exp(basket_mu + 0.4**2 / 2), 2),
        seasonal=seasonal,
        churns=churns,
        decay_starts_at=decay_start.isoformat() if decay_start else None,
        churn_at=churn_at.isoformat() if churn_at else None,
        group=group,
    )
    return _Customer(truth, signup, purchase_rate, basket_mu, favourites, channel, decay_start, churn_at,
                     conversion)


def _activity(customer: _Customer, when: datetime, spec: PopulationSpec) -> float:
    """Multiplier of the customer's base rate at a moment: seasonality and churn decay."""
    level = 1.0
    if customer.truth.seasonal:
        day_of_year = when.timetuple().tm_yday
        level *= 0.4 + 2.2 * math.exp(-(((day_of_year - 340) % 365) / 25.0) ** 2 / 2) \
            if (day_of_year - 340) % 365 < 60 else 0.4
    if customer.churn_at is not None and customer.decay_start is not None:
        if when >= customer.churn_at:
            return 0.0
        if when >= customer.decay_start:
            level *= (customer.churn_at - when) / (customer.churn_at - customer.decay_start)
    return level


def _customer_events(rng: random.Random, spec: PopulationSpec,
                     customer: _Customer) -> Iterator[dict[str, Any]]:
    end = spec.start + timedelta(days=spec.days)
    cid = customer.truth.customer_id
    counter = 0
    hours = random.Random(f"{spec.seed}-hours-{cid}")  # its own stream: the other draws stay those without
    peak = hours.uniform(8, 22)
    day = customer.signup
    while day < end:
        level = _activity(customer, day, spec)
        if level > 0:
            in_decay = customer.decay_start is not None and day >= customer.decay_start
            # Browsing sessions outnumber purchases (4 to 1 unless the customer's group says otherwise).
            for _ in range(_poisson(rng, customer.purchase_rate / customer.conversion * level)):
                when = day + timedelta(seconds=rng.randrange(86_400))
                if spec.diurnal:
                    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
                    when = max(day, midnight + timedelta(hours=hours.gauss(peak, DIURNAL_SPREAD_HOURS) % 24))
                if when >= end:
                    continue
                factors = {name: spec.incident.factor_for(name, when) if spec.incident else 1.0
                           for name in INCIDENT_SIGNALS}
                buys = rng.random() < customer.conversion * factors["conversion"]
                for event in _session(rng, customer, when, buys=buys, in_decay=in_decay, factors=factors):
                    counter += 1
                    event["event_id"] = f"{cid}-{counter:07d}"
                    yield event
        day += timedelta(days=1)


def marketing_allowed(customer_id: str) -> bool:
    """Whether a generated customer agreed to marketing (about 4 in 5; fixed by the id, so it
    draws nothing from the population's random stream). Every session's first event says so.

    >>> sum(marketing_allowed(f"gen-{i:06d}") for i in range(1000)) / 1000
    0.78
    """
    return zlib.crc32(customer_id.encode()) % 5 != 0


def _session(rng: random.Random, customer: _Customer, start: datetime, *, buys: bool,
             in_decay: bool, factors: dict[str, float]) -> Iterator[dict[str, Any]]:
    cid = customer.truth.customer_id
    channel = customer.channel if rng.random() < 0.8 else rng.choice(CHANNELS)
    session = f"s-{cid}-{int(start.timestamp())}"
    clock = start

    def envelope(event_type: str, **fields: Any) -> dict[str, Any]:
        nonlocal clock
        clock += timedelta(seconds=rng.randint(5, 180))
        return {"type": event_type, "customer_id": cid, "event_time": clock.isoformat(),
                "channel": channel, "session_id": session, **fields}

    yield envelope("page_view", url="/", consent={"analytics": True, "marketing": marketing_allowed(cid)})
    if rng.random() < 0.3:
        yield envelope("search", query=rng.choice(customer.favourites))
    cart: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 4)):
        category = rng.choice(customer.favourites) if rng.random() < 0.8 else rng.choice(CATEGORIES)
        sku = f"sku-{category}-{rng.randint(1, 200)}"
        yield envelope("product_view", sku=sku, category=category)
        if buys or rng.random() < 0.3:
            price = Decimal(str(round(math.exp(rng.gauss(customer.basket_mu, 0.4)) / 1.5
                                      * factors["basket_value"], 2)))
            quantity = 1 if rng.random() < 0.8 else 2
            cart.append({"sku": sku, "category": category, "quantity": quantity,
                         "unit_price": str(price)})
            yield envelope("add_to_cart", sku=sku, category=category, quantity=quantity,
                           unit_price=str(price))
    checks_out = bool(cart) and (buys or rng.random() < 0.5)
    if checks_out and factors["checkout"] != 1.0:  # a checkout fault: fewer carts get there (or buy)
        checks_out = rng.random() < factors["checkout"]
    if checks_out:
        total = sum((Decimal(i["unit_price"]) * i["quantity"] for i in cart), Decimal(0))
        yield envelope("checkout_start", cart_value=str(total))
        if buys:
            order_id = f"o-{cid}-{int(clock.timestamp())}"
            yield envelope("purchase", order_id=order_id, items=cart, total=str(total), currency="USD")
            if rng.random() < (0.15 if in_decay else 0.04) * factors["refund_rate"]:
                refund_at = clock + timedelta(seconds=rng.randrange(86_400, 10 * 86_400))
                yield {"type": "refund", "customer_id": cid, "event_time": refund_at.isoformat(),
                       "channel": channel, "order_id": order_id,
                       "amount": str((total * Decimal(str(rng.uniform(0.2, 1)))).quantize(Decimal("0.01"))),
                       "reason": rng.choice(["damaged", "late delivery", "not as described",
                                             "changed mind"])}
    if rng.random() < (0.12 if in_decay else 0.015):
        kind = "complaint" if in_decay or rng.random() < 0.4 else "question"
        yield envelope("support_contact", kind=kind,
                       topic=rng.choice(["delivery", "billing", "product quality", "account"]))


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; means here are small (well under 10)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def inject_anomalies(events: list[dict[str, Any]], share: float, seed: int = 0, factor: float = 20.0
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Plant abnormal purchases: for ``share`` of the customers with at least four purchases,
    one extra purchase after their third, of ``factor`` times their median basket so far, at 03:00-04:59
    UTC on another channel than their own. Returns the events with them (in event-time order)
    and the planted purchases. The generated events themselves are unchanged, so a seed gives
    the same population with or without anomalies.

    >>> events, _ = generate(PopulationSpec(customers=60, days=120, seed=3))
    >>> mixed, planted = inject_anomalies(events, 0.5, seed=1)
    >>> len(mixed) == len(events) + len(planted) > len(events)
    True
    """
    rng = random.Random(seed)
    purchases: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["type"] == "purchase":
            purchases.setdefault(event["customer_id"], []).append(event)
    planted = []
    for cid in sorted(purchases):
        bought = purchases[cid]
        if len(bought) < 4 or rng.random() >= share:
            continue
        after = rng.randrange(2, len(bought) - 1)  # a day or more after the (after+1)-th purchase
        start = datetime.fromisoformat(bought[after]["event_time"])
        end = datetime.fromisoformat(bought[after + 1]["event_time"])
        day = start + timedelta(days=rng.randint(1, max(1, (end - start).days)))
        when = day.replace(hour=3, minute=rng.randrange(120) % 60, second=rng.randrange(60)) + timedelta(
            hours=rng.randrange(2))
        totals = sorted(Decimal(p["total"]) for p in bought[:after + 1])
        total = (totals[len(totals) // 2] * Decimal(str(factor))).quantize(Decimal("0.01"))
        channel = rng.choice([c for c in CHANNELS if c != bought[after]["channel"]])
        category = bought[after]["items"][0]["category"]
        planted.append({"type": "purchase", "event_id": f"{cid}-anomaly", "customer_id": cid,
                        "event_time": when.isoformat(), "channel": channel, "order_id": f"o-{cid}-anomaly",
                        "items": [{"sku": f"sku-{category}-999", "category": category, "quantity": 1,
                                   "unit_price": str(total)}], "total": str(total), "currency": "USD"})
    mixed = sorted(events + planted, key=lambda e: (e["event_time"], e["event_id"]))
    return mixed, planted


@dataclass(frozen=True)
class CrossSell:
    """A planted rule: after a purchase of ``antecedent``, with probability ``share`` the
    customer buys ``consequent`` 1-``within_days`` days later."""

    antecedent: str
    consequent: str
    share: float
    within_days: int = 30

    @classmethod
    def parse(cls, text: str) -> CrossSell:
        """
        >>> CrossSell.parse("books:music:0.6")
        CrossSell(antecedent='books', consequent='music', share=0.6, within_days=30)
        >>> CrossSell.parse("books:books:0.6")
        Traceback (most recent call last):
        ValueError: --cross-sell: expected A:B:SHARE with two different categories of ...
        """
        parts = text.split(":")
        categories = ", ".join(CATEGORIES)
        try:
            antecedent, consequent, share = parts[0], parts[1], float(parts[2])
        except (IndexError, ValueError):
            antecedent = consequent = ""
            share = -1.0
        if len(parts) != 3 or antecedent == consequent or {antecedent, consequent} - set(CATEGORIES) \
                or not 0 < share <= 1:
            raise ValueError(f"--cross-sell: expected A:B:SHARE with two different categories of {categories} "
                             f"and 0 < SHARE <= 1, e.g. books:music:0.6; got {text!r}")
        return cls(antecedent, consequent, share)


def plant_cross_sell(events: list[dict[str, Any]], rule: CrossSell, seed: int = 0
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """After each purchase with ``rule.antecedent`` in its basket, with probability
    ``rule.share``, a purchase of ``rule.consequent`` 1 to ``rule.within_days`` days later
    (inside the generated period). The consequent is bought only through the rule: the
    generated purchases' items of that category move to another category (neither of the
    rule's), so the rule stands out from the population's mix of categories. Returns the events
    with the planted purchases (in event-time order), and the planted purchases.

    >>> events, _ = generate(PopulationSpec(customers=60, days=120, seed=3))
    >>> mixed, planted = plant_cross_sell(events, CrossSell("books", "music", 0.5), seed=1)
    >>> len(mixed) == len(events) + len(planted) > len(events)
    True
    """
    rng = random.Random(seed)
    end = max(datetime.fromisoformat(e["event_time"]) for e in events) if events else None
    others = [c for c in CATEGORIES if c not in (rule.antecedent, rule.consequent)]
    events = [_without(event, rule.consequent, others, rng) for event in events]
    planted: list[dict[str, Any]] = []
    for event in events:
        if event["type"] != "purchase" or not any(
                item.get("category") == rule.antecedent for item in event.get("items", ())):
            continue
        if rng.random() >= rule.share:
            continue
        when = datetime.fromisoformat(event["event_time"]) + timedelta(
            seconds=rng.randrange(86_400, rule.within_days * 86_400))
        if end is None or when > end:
            continue
        price = Decimal(str(round(math.exp(rng.gauss(math.log(30), 0.4)), 2)))
        number = len(planted) + 1
        cid = event["customer_id"]
        planted.append({"type": "purchase", "event_id": f"{cid}-xsell-{number}", "customer_id": cid,
                        "event_time": when.isoformat(), "channel": event.get("channel", "web"),
                        "order_id": f"o-{cid}-xsell-{number}",
                        "items": [{"sku": f"sku-{rule.consequent}-{rng.randint(1, 200)}", "category": rule.consequent,
                                   "quantity": 1, "unit_price": str(price)}],
                        "total": str(price), "currency": "USD"})
    mixed = sorted(events + planted, key=lambda e: (e["event_time"], e["event_id"]))
    return mixed, planted


def _without(event: dict[str, Any], category: str, others: list[str], rng: random.Random) -> dict[str, Any]:
    """The event with a purchase's items of ``category`` moved to one of ``others``."""
    if event["type"] != "purchase" or not any(item.get("category") == category for item in event.get("items", ())):
        return event
    moved = rng.choice(others)
    items = [{**item, "category": moved, "sku": f"sku-{moved}-{item['sku'].rsplit('-', 1)[-1]}"}
             if item.get("category") == category else item for item in event["items"]]
    return {**event, "items": items}
