"""The batch reference: raw RFM values computed over a whole event list at once.

Used to check the streaming result (it shares no code with :mod:`stream.core.fold`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


@dataclass(frozen=True)
class RawRfm:
    events: int
    orders: int
    monetary: Decimal
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    purchase_days: int = 0  # distinct UTC days with a purchase
    active_days: int = 0  # distinct UTC days with any event
    hour_slots: tuple[int, ...] = ()  # events per 3-hour slot of the day (UTC), from 00:00


def batch_raw_rfm(events: Iterable[Mapping[str, Any]]) -> dict[str, RawRfm]:
    """Deduplicate by event id, then group by customer and aggregate.

    >>> evs = [{"event_id": "1", "customer_id": "a", "type": "purchase", "total": "2.50",
    ...         "event_time": "2024-01-02T00:00:00+00:00"},
    ...        {"event_id": "1", "customer_id": "a", "type": "purchase", "total": "2.50",
    ...         "event_time": "2024-01-02T00:00:00+00:00"},
    ...        {"event_id": "2", "customer_id": "a", "type": "page_view",
    ...         "event_time": "2024-01-01T00:00:00+00:00"}]
    >>> r = batch_raw_rfm(evs)["a"]
    >>> r.events, r.orders, r.monetary
    (2, 1, Decimal('2.50'))
    """
    unique: dict[str, Mapping[str, Any]] = {}
    for event in events:
        unique.setdefault(str(event["event_id"]), event)
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for event in unique.values():
        grouped.setdefault(str(event["customer_id"]).strip(), []).append(event)
    result = {}
    for customer_id, evs in grouped.items():
        purchases = [e for e in evs if e["type"] == "purchase"]
        refunds = [e for e in evs if e["type"] == "refund"]
        times = [datetime.fromisoformat(str(e["event_time"])) for e in purchases]
        monetary = sum((_cents(e["total"]) for e in purchases), Decimal(0)) - sum(
            (_cents(e["amount"]) for e in refunds), Decimal(0))
        result[customer_id] = RawRfm(
            events=len(evs),
            orders=len(purchases),
            monetary=monetary,
            first_purchase_at=min(times) if times else None,
            last_purchase_at=max(times) if times else None,
            purchase_days=len({int(t.timestamp() // 86_400) for t in times}),
            active_days=len({int(datetime.fromisoformat(str(e["event_time"])).timestamp() // 86_400) for e in evs}),
            hour_slots=tuple(sum(datetime.fromisoformat(str(e["event_time"])).astimezone(UTC).hour // 3 == slot
                                 for e in evs) for slot in range(8)),
        )
    return result


def _cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class BatchAffinity:
    """Cross-sell counts over a whole event log (``stream/core/affinity.py``)."""

    orders: dict[str, int]  # purchases with each category ("*": all)
    follows: dict[tuple[str, str], int]  # of those, followed by another purchase with B within the window
    by_customer: dict[str, tuple[dict[str, int], dict[str, int]]]  # the same per customer ("A>B" keys)


def batch_affinity(events: Iterable[Mapping[str, Any]], window_seconds: int) -> BatchAffinity:
    """Deduplicate by event id; a purchase is followed by B when another purchase of the same
    customer containing B is at most ``window_seconds`` after it (or at the same second).

    >>> evs = [{"event_id": "1", "customer_id": "a", "type": "purchase", "event_time": "2024-01-01T00:00:00+00:00",
    ...         "items": [{"category": "books"}]},
    ...        {"event_id": "2", "customer_id": "a", "type": "purchase", "event_time": "2024-01-20T00:00:00+00:00",
    ...         "items": [{"category": "music"}]}]
    >>> found = batch_affinity(evs, 30 * 86_400)
    >>> found.orders, found.follows
    ({'*': 2, 'books': 1, 'music': 1}, {('*', 'music'): 1, ('books', 'music'): 1})
    """
    unique: dict[str, Mapping[str, Any]] = {}
    for event in events:
        unique.setdefault(str(event["event_id"]), event)
    baskets: dict[str, list[tuple[int, str, set[str]]]] = {}
    for event_id, event in unique.items():
        if event["type"] != "purchase":
            continue
        moment = int(datetime.fromisoformat(str(event["event_time"])).timestamp())
        categories = {str(item["category"]) for item in event.get("items", ()) if item.get("category")}
        baskets.setdefault(str(event["customer_id"]).strip(), []).append((moment, event_id, categories))
    orders: dict[str, int] = {}
    follows: dict[tuple[str, str], int] = {}
    by_customer = {}
    for customer_id, mine in baskets.items():
        own_orders: dict[str, int] = {}
        own_follows: dict[str, int] = {}
        for moment, event_id, categories in mine:
            after = set().union(*(cats for when, other, cats in mine
                                  if other != event_id and 0 <= when - moment <= window_seconds))
            for antecedent in ("*", *categories):
                own_orders[antecedent] = own_orders.get(antecedent, 0) + 1
                for consequent in after:
                    key = f"{antecedent}>{consequent}"
                    own_follows[key] = own_follows.get(key, 0) + 1
        by_customer[customer_id] = (dict(sorted(own_orders.items())), dict(sorted(own_follows.items())))
        for key, n in own_orders.items():
            orders[key] = orders.get(key, 0) + n
        for pair, n in own_follows.items():
            a, _, b = pair.partition(">")
            follows[(a, b)] = follows.get((a, b), 0) + n
    return BatchAffinity(dict(sorted(orders.items())), dict(sorted(follows.items())), by_customer)


@dataclass
class Stitched:
    """A customer's events with their anonymous ids' (see :func:`batch_stitched`)."""

    events: int = 0
    aliases: list[str] = field(default_factory=list)


def batch_stitched(events: Iterable[Mapping[str, Any]], link_limit: int,
                   placeholders: frozenset[str] = frozenset()) -> dict[str, Stitched]:
    """Each customer's events once anonymous ids are stitched in, taking the events in the order
    given (the order each id's partition sees them): an anonymous id's events before its first link
    go to the customer it links to, later ones to the customer it is linked to then; a link to more
    than ``link_limit`` customers, or with an id in ``placeholders``, is ignored.

    >>> evs = [{"event_id": "1", "anonymous_id": "d", "type": "page_view"},
    ...        {"event_id": "2", "anonymous_id": "d", "customer_id": "c", "type": "identify"},
    ...        {"event_id": "3", "customer_id": "c", "type": "purchase"},
    ...        {"event_id": "4", "anonymous_id": "d", "type": "page_view"},
    ...        {"event_id": "4", "anonymous_id": "d", "type": "page_view"}]
    >>> batch_stitched(evs, link_limit=1)["c"]
    Stitched(events=3, aliases=['d'])
    """
    seen: set[str] = set()
    own: dict[str, int] = {}  # an anonymous id's events before its first link
    linked: dict[str, str] = {}
    links: dict[str, list[str]] = {}
    out: dict[str, Stitched] = {}
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        anonymous, customer = str(event.get("anonymous_id") or ""), str(event.get("customer_id") or "")
        if event["type"] == "identify":
            if anonymous in placeholders or customer in placeholders or linked.get(anonymous) == customer:
                continue
            earlier = links.setdefault(anonymous, [])
            if customer not in earlier and len(earlier) >= link_limit:
                continue
            target = out.setdefault(customer, Stitched())
            if anonymous not in linked:
                target.events += own.pop(anonymous, 0)
            if anonymous not in target.aliases:
                target.aliases.append(anonymous)
            linked[anonymous] = customer
            if customer not in earlier:
                earlier.append(customer)
        elif customer:
            out.setdefault(customer, Stitched()).events += 1
        elif anonymous not in placeholders:
            if anonymous in linked:
                out.setdefault(linked[anonymous], Stitched()).events += 1
            else:
                own[anonymous] = own.get(anonymous, 0) + 1
    return out
