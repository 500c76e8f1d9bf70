"""The batch reference: raw RFM values computed over a whole event list at once.

Used to check the streaming result (it shares no code with :mod:`stream.core.fold`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
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
        )
    return result


def _cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
