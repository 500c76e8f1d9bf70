"""The time-driven sweep index: customers filed under the hour of their next boundary.

Per partition, ``cursor@p{n}`` is the last hour bucket fully swept and ``{hour}@p{n}`` lists
the customers whose next boundary falls in that hour. A sweep visits only the buckets
between the cursor and the watermark, never all customers; entries left behind when a
customer's boundary moves are dropped when their bucket is visited.
"""

from __future__ import annotations

import json
from datetime import datetime

TICK_KEY = b"\x00pulse-sweep-tick"
RESYNC_KEY = b"\x00pulse-resync"  # control record: re-publish this partition's profiles


def hour_bucket(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


def bucket_key(bucket: int, partition: int) -> str:
    return f"{bucket}@p{partition}"


def cursor_key(partition: int) -> str:
    return f"cursor@p{partition}"


def decode_members(raw: bytes | None) -> list[str]:
    return json.loads(raw) if raw else []


def encode_members(members: list[str]) -> bytes:
    return json.dumps(members, separators=(",", ":")).encode()


def with_member(raw: bytes | None, customer_id: str) -> bytes:
    """Add a customer to a bucket once.

    >>> with_member(with_member(None, "a"), "a")
    b'["a"]'
    """
    members = decode_members(raw)
    if customer_id not in members:
        members.append(customer_id)
    return encode_members(members)


def filing_bucket(boundary: datetime, cursor: int | None) -> int:
    """Where to file a boundary: its hour, or the next unswept hour if that one is past."""
    bucket = hour_bucket(boundary)
    return bucket if cursor is None or bucket > cursor else cursor + 1
