"""Control groups: which customers are held out from alert-driven interventions.

A customer is in the holdout when a keyed hash of their id falls below the configured share
(``PULSE_HOLDOUT_SHARE``), so the assignment is stable across workers, restarts and replays,
and the same customers are held out from every alert kind (a universal control group: an
intervention on one kind cannot leak into another kind's comparison). Their alerts are still
raised, recorded and resolved into outcomes, flagged ``holdout: true`` so triggers skip them;
``pulse uplift-report`` compares their outcomes with the treated customers'.
"""

from __future__ import annotations

import hashlib

NAMESPACE = b"customer-pulse/holdout/v1:"
MAX_SHARE = 0.5


def holdout_point(customer_id: str) -> float:
    """The customer's fixed point in [0, 1): the first 8 bytes of SHA-256 over the namespaced id.

    >>> holdout_point("c-1") == holdout_point("c-1")
    True
    >>> 0 <= holdout_point("anyone") < 1
    True
    """
    digest = hashlib.sha256(NAMESPACE + customer_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(customer_id: str, share: float) -> bool:
    """Whether the customer is held out at this share (0: nobody). Raising the share only adds
    customers: whoever was held out stays held out.

    >>> in_holdout("c-1", 0.0)
    False
    >>> abs(sum(in_holdout(f"c-{i}", 0.1) for i in range(10_000)) - 1_000) < 60  # 3 standard deviations
    True
    """
    return share > 0 and holdout_point(customer_id) < share
