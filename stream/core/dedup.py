"""Admission of an event into a customer's state: new, a redelivered duplicate, or too late.

Per customer, bounded: the ids of events within ``horizon`` of the customer's newest event
time are remembered (at most ``max_ids`` of them), and an event older than the customer's
newest event time minus ``lateness`` is too late. Kafka keeps one customer's events in
order within a partition, so this lateness does not depend on skew between partitions.

Ids are kept compactly inside the state's byte budget: a 48-bit BLAKE2 digest per id,
grouped by event day (a chance collision, which would drop a new event as a duplicate, is
about 1 in 10^12 per event with 256 ids remembered).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from hashlib import blake2b

DIGEST_BYTES = 6
_GROUP = struct.Struct(">iH")  # event day (days since 1970, signed), number of digests


class Admission(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


@dataclass(frozen=True)
class DedupPolicy:
    lateness: timedelta = timedelta(days=3)
    horizon: timedelta = timedelta(days=7)
    max_ids: int = 256

    def __post_init__(self) -> None:
        if self.horizon < self.lateness:
            # An id forgotten while its event could still be accepted would be double counted.
            raise ValueError("the dedup horizon must be at least the allowed lateness")


DEFAULT_POLICY = DedupPolicy()

Groups = list[tuple[int, list[bytes]]]


def digest(event_id: str) -> bytes:
    return blake2b(event_id.encode(), digest_size=DIGEST_BYTES).digest()


def session_key(session_id: str) -> str:
    """A short digest of a session id, to remember a customer's recent sessions compactly.

    >>> session_key("s-42")
    '80f64f01d151'
    """
    return digest(session_id).hex()


RECENT_SESSIONS = 8


def with_session(recent: list[str], session_id: str) -> list[str]:
    """The digests of the customer's last sessions, with this one: a late event of an earlier session
    does not start another, and an alias's merge knows whether the session of its login was counted.

    >>> with_session(with_session([], "s1"), "s1") == [session_key("s1")]
    True
    """
    key = session_key(session_id)
    return recent if key in recent else [*recent, key][-RECENT_SESSIONS:]


def _day(moment: datetime) -> int:
    return int(moment.timestamp() // 86_400)


def decode(seen: str) -> Groups:
    raw = base64.b64decode(seen) if seen else b""
    groups: Groups = []
    offset = 0
    while offset < len(raw):
        day, count = _GROUP.unpack_from(raw, offset)
        offset += _GROUP.size
        groups.append((day, [raw[offset + i * DIGEST_BYTES: offset + (i + 1) * DIGEST_BYTES]
                             for i in range(count)]))
        offset += count * DIGEST_BYTES
    return groups


def encode(groups: Groups) -> str:
    parts = []
    for day, digests in groups:
        if digests:
            parts.append(_GROUP.pack(day, len(digests)) + b"".join(digests))
    return base64.b64encode(b"".join(parts)).decode()


def admit(seen: str, newest: datetime | None, event_id: str, event_time: datetime,
          policy: DedupPolicy) -> Admission:
    """Classify an event for a customer whose newest event time is ``newest``.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 10, tzinfo=UTC)
    >>> seen, _ = remember("", "e1", t, t, DEFAULT_POLICY)
    >>> admit(seen, t, "e1", t, DEFAULT_POLICY).value
    'duplicate'
    >>> admit(seen, t, "e2", t - timedelta(days=4), DEFAULT_POLICY).value
    'too_late'
    >>> admit(seen, t, "e3", t - timedelta(days=2), DEFAULT_POLICY).value
    'applied'
    """
    key = digest(event_id)
    if any(key in digests for _, digests in decode(seen)):
        return Admission.DUPLICATE
    if newest is not None and event_time < newest - policy.lateness:
        return Admission.TOO_LATE
    return Admission.APPLIED


def remember(seen: str, event_id: str, event_time: datetime, newest: datetime,
             policy: DedupPolicy) -> tuple[str, int]:
    """Add an id, forget the days older than the horizon, keep at most ``max_ids``.

    Returns the new encoding and how many ids the cap evicted while still inside the
    horizon (those could let a duplicate through; the count makes that visible).
    """
    cutoff = _day(newest - policy.horizon)
    groups = [(day, digests) for day, digests in decode(seen) if day >= cutoff]
    day = _day(event_time)
    for group_day, digests in groups:
        if group_day == day:
            digests.append(digest(event_id))
            break
    else:
        groups.append((day, [digest(event_id)]))
        groups.sort(key=lambda group: group[0])
    evicted = 0
    total = sum(len(d) for _, d in groups)
    while total > policy.max_ids:
        # The oldest day's oldest ids go first.
        groups[0][1].pop(0)
        if not groups[0][1]:
            groups.pop(0)
        total -= 1
        evicted += 1
    return encode(groups), evicted


def remembered(seen: str) -> int:
    """How many ids an encoding holds."""
    return sum(len(d) for _, d in decode(seen))
