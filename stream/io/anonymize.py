"""Browsing before login, planted in a generated population (``pulse generate --anonymous-share``):
a customer's first session is browsed on a device before they log in. Its clicks carry
``anonymous_id`` (the device) and no ``customer_id``, and an ``identify`` event links the two
just after the last of them; what follows in the session is the customer's, as before. Once
stitched, each customer's profile counts what it counted without the planting
(``tests/unit/test_identity.py`` checks it)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from schemas import CLICK_TYPES


def device_id(customer_id: str) -> str:
    return f"{customer_id}-device"


def browse_before_login(events: list[dict[str, Any]], share: float, seed: int = 0
                        ) -> tuple[list[dict[str, Any]], int]:
    """The events with a ``share`` of the customers' first sessions browsed anonymously, and how
    many customers were chosen (deterministic for a seed).

    >>> events = [{"type": "page_view", "event_id": "1", "customer_id": "c", "session_id": "s",
    ...            "event_time": "2024-01-01T10:00:00+00:00"},
    ...           {"type": "purchase", "event_id": "2", "customer_id": "c", "session_id": "s", "order_id": "o",
    ...            "total": "5", "event_time": "2024-01-01T10:05:00+00:00"}]
    >>> planted, chosen = browse_before_login(events, 1.0)
    >>> [(e["type"], e.get("customer_id"), e.get("anonymous_id")) for e in planted]
    [('page_view', None, 'c-device'), ('identify', 'c', 'c-device'), ('purchase', 'c', None)]
    """
    rng = random.Random(f"{seed}-anonymous")
    first_session: dict[str, str] = {}
    for event in sorted(events, key=_time):
        if event.get("session_id") and event.get("customer_id"):
            first_session.setdefault(event["customer_id"], event["session_id"])
    chosen = {customer for customer in sorted(first_session) if rng.random() < share}
    last_click: dict[str, dict[str, Any]] = {}  # browsing anonymously, by customer: their last click
    logged_in: set[str] = set()
    out: list[dict[str, Any]] = []
    for event in sorted(events, key=_time):
        customer = event.get("customer_id")
        if customer in chosen and customer not in logged_in and event.get("session_id") == first_session[customer]:
            if event["type"] in CLICK_TYPES:
                anonymous = {k: v for k, v in event.items() if k != "customer_id"}
                last_click[customer] = {**anonymous, "anonymous_id": device_id(customer)}
                out.append(last_click[customer])
                continue
            if customer in last_click:  # the first thing only a known customer does: the login before it
                out.append(_identify(customer, last_click[customer]))
                logged_in.add(customer)
        out.append(event)
    for customer in sorted(set(last_click) - logged_in):  # the session ended while browsing: log in after it
        out.append(_identify(customer, last_click[customer]))
    return sorted(out, key=_time), len(chosen)


def _identify(customer: str, last_click: dict[str, Any]) -> dict[str, Any]:
    at = datetime.fromisoformat(last_click["event_time"]) + timedelta(seconds=1)
    return {"type": "identify", "event_id": f"{customer}-login", "customer_id": customer,
            "anonymous_id": device_id(customer), "event_time": at.isoformat(),
            "channel": last_click.get("channel", "web"), "session_id": last_click.get("session_id")}


def _time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["event_time"])
