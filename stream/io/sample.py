"""A small seeded sample stream for the demo and the wiring tests: clicks, purchases, refunds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

CATEGORIES = ("books", "music", "electronics", "home", "garden", "toys", "fashion")
CHANNELS = ("web", "app", "store")


def sample_events(customers: int, events: int, *, seed: int = 7,
                  start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
                  prefix: str = "demo") -> list[dict[str, Any]]:
    """``events`` events spread over ``customers`` customers, in event-time order.

    Event ids are derived from the seed, so the same call yields the same ids and a
    second send is recognised as redelivery.

    >>> evs = sample_events(3, 10, seed=1)
    >>> len(evs), len({e["customer_id"] for e in evs}), evs == sample_events(3, 10, seed=1)
    (10, 3, True)
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    clock = start
    for i in range(events):
        customer = f"{prefix}-c{(i % customers) + 1:04d}" if i < customers else \
            f"{prefix}-c{rng.randrange(customers) + 1:04d}"
        clock += timedelta(minutes=rng.randint(1, 240))
        base = {
            "event_id": f"{prefix}-{seed}-{i:07d}",
            "customer_id": customer,
            "event_time": clock.isoformat(),
            "channel": rng.choice(CHANNELS),
        }
        roll = rng.random()
        category = rng.choice(CATEGORIES)
        if roll < 0.35:
            quantity = rng.randint(1, 3)
            price = Decimal(rng.randint(199, 9999)) / 100
            total = price * quantity
            out.append({**base, "type": "purchase", "order_id": f"o-{seed}-{i}",
                        "items": [{"sku": f"sku-{rng.randint(1, 500)}", "category": category,
                                   "quantity": quantity, "unit_price": str(price)}],
                        "total": str(total), "currency": "USD"})
        elif roll < 0.38:
            out.append({**base, "type": "refund", "order_id": f"o-{seed}-{i - 1}",
                        "amount": str(Decimal(rng.randint(100, 1500)) / 100)})
        elif roll < 0.70:
            out.append({**base, "type": "product_view", "sku": f"sku-{rng.randint(1, 500)}",
                        "category": category})
        elif roll < 0.85:
            out.append({**base, "type": "add_to_cart", "sku": f"sku-{rng.randint(1, 500)}",
                        "category": category, "quantity": 1})
        else:
            out.append({**base, "type": "page_view", "url": f"/c/{category}"})
    return out
