"""What each event adds to its event-time day's population counts: sessions, cart sessions,
checkouts, purchases, basket amounts, refunds, complaints, and at ingest the records received and
rejected at validation (the inputs of ``stream/model/activity_drift.py``)."""

from __future__ import annotations

import math

# signal: (numerator count, denominator count) for rates; basket value is a mean of log amounts
RATES = {"conversion": ("purchases", "sessions"), "checkout_completion": ("purchases", "checkouts"),
         "cart_checkout": ("checkouts", "carts"),  # checkouts started per session that filled a cart
         "purchase_rate": ("purchases", "active_customers"),  # purchases per customer active that day
         "refund_rate": ("refunds", "purchases"), "complaint_rate": ("complaints", "sessions"),
         "dead_letter_rate": ("dead_letters", "records")}  # of the records received, those rejected at validation
# rates that are normally (close to) zero: the least baseline their sampling error is judged by,
# so that a stream without any still pools enough records and a burst stands out
RATE_FLOORS = {"dead_letter_rate": 0.005}
SIGNALS = (*RATES, "basket_value")


def event_counts(event_type: str, new_session: bool, total_cents: int = 0, complaint: bool = False,
                 new_active_day: bool = False, new_cart: bool = False) -> dict[str, float]:
    """What one event adds to its day's counts (``new_active_day``: the customer's first event of
    that day, counted once in any arrival order by the state's active days; ``new_cart``: the
    first add-to-cart of its session, ``stream.core.fold.starts_cart``).

    >>> event_counts("purchase", new_session=False, total_cents=1000)
    {'purchases': 1.0, 'baskets': 1.0, 'log_basket': 2.302585092994046, 'log_basket_sq': 5.301898110478399}
    """
    counts: dict[str, float] = {"sessions": 1.0} if new_session else {}
    if new_active_day:
        counts["active_customers"] = 1.0
    if new_cart:
        counts["carts"] = 1.0
    if event_type == "purchase":
        counts["purchases"] = 1.0
        if total_cents > 0:  # basket value: the mean log amount (a geometric mean: amounts are heavy-tailed)
            log_amount = math.log(total_cents / 100)
            counts.update(baskets=1.0, log_basket=log_amount, log_basket_sq=log_amount * log_amount)
    elif event_type == "checkout_start":
        counts["checkouts"] = 1.0
    elif event_type == "refund":
        counts["refunds"] = 1.0
    elif event_type == "support_contact" and complaint:
        counts["complaints"] = 1.0
    return counts
