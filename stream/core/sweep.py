"""The time-driven sweep index: customers filed under the hour of their next boundary.

Per partition, ``cursor@p{n}`` is the last hour bucket fully swept and ``{hour}@p{n}`` lists
the customers whose next boundary falls in that hour. A sweep visits only the buckets
between the cursor and the watermark, never all customers; entries left behind when a
customer's boundary moves are dropped when their bucket is visited.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Protocol

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


class SweepIndex(Protocol):
    """The sweep-index table as a batch sees it (:class:`stream.core.work.IndexView`): keys to
    bytes, and each bucket's members decoded once per batch."""

    def get(self, key: str, /) -> bytes | None: ...
    def __setitem__(self, key: str, value: bytes) -> None: ...
    def members(self, key: str) -> list[str]: ...
    def set_members(self, key: str, members: list[str]) -> None: ...


def filing_bucket(boundary: datetime, cursor: int | None) -> int:
    """Where to file a boundary: its hour, or the next unswept hour if that one is past."""
    bucket = hour_bucket(boundary)
    return bucket if cursor is None or bucket > cursor else cursor + 1


def file_boundary(index: SweepIndex, partition: int, customer_id: str,
                  boundary: datetime | None, old: datetime | None = None) -> None:
    """File a customer under the hour of their next boundary (none: unfile only), and unfile
    them from the hour of ``old``, so sweeps read only due customers."""
    stored_cursor = index.get(cursor_key(partition))
    cursor = int(stored_cursor) if stored_cursor else None
    if old is not None:
        old_key = bucket_key(filing_bucket(old, cursor), partition)
        members = index.members(old_key)
        if customer_id in members:
            members.remove(customer_id)
            index.set_members(old_key, members)
    if boundary is None:
        return
    bucket = filing_bucket(boundary, cursor)
    if cursor is None:
        index[cursor_key(partition)] = str(bucket - 1).encode()
    key = bucket_key(bucket, partition)
    members = index.members(key)
    if customer_id not in members:
        members.append(customer_id)
        index.set_members(key, members)
