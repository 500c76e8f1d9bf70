"""Erasure of one customer (a data-subject erasure request, ``pulse forget``): the request as a
control record, the suppression marker that outlives it, and the receipt.

The request goes to the ``customer-events`` partition that owns the customer (key
:data:`ERASE_KEY`), so the one worker that holds the customer's state applies it, in order
with the customer's other records. That worker deletes the state (its changelog gets a
tombstone), unfiles the customer from the sweep index, takes them out of the RFM population,
and files a suppression marker keyed by a digest of the id (not the id). The Redis sink then
removes the hash, segment membership and stream entries, and writes the receipt.

Later events for the id are dead-lettered without their payload and not profiled again,
unless they carry fresh analytics consent (``consent.analytics: true`` after the erasure).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

ERASE_KEY = b"\x00pulse-erase"  # control record on customer-events: erase one customer
RECEIPT_PREFIX = "privacy:receipt:"  # Redis key of a receipt, after the key prefix, by request id


class ErasureRequestError(ValueError):
    """A control record that is not an erasure request."""


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    customer_id: str
    requested_at: datetime

    def to_bytes(self) -> bytes:
        return json.dumps({"request_id": self.request_id, "customer_id": self.customer_id,
                           "requested_at": self.requested_at.isoformat()}).encode()

    @classmethod
    def new(cls, customer_id: str, now: datetime) -> ErasureRequest:
        if not customer_id.strip():
            raise ErasureRequestError("the customer id is empty")
        return cls(uuid.uuid4().hex, customer_id.strip(), now)

    @classmethod
    def from_bytes(cls, value: bytes | None) -> ErasureRequest:
        """
        >>> ErasureRequest.from_bytes(ErasureRequest("r1", "c7", datetime(2026, 1, 1)).to_bytes()).customer_id
        'c7'
        >>> ErasureRequest.from_bytes(b'{"customer_id": ""}')
        Traceback (most recent call last):
        ...
        stream.core.erasure.ErasureRequestError: not an erasure request: needs request_id, customer_id, requested_at
        """
        try:
            data = json.loads(value or b"")
            request = cls(str(data["request_id"]), str(data["customer_id"]),
                          datetime.fromisoformat(data["requested_at"]))
        except (ValueError, KeyError, TypeError):
            raise ErasureRequestError("not an erasure request: needs request_id, customer_id, requested_at") from None
        if not request.customer_id:
            raise ErasureRequestError("not an erasure request: the customer id is empty")
        return request


def subject_digest(customer_id: str) -> str:
    """The suppression list's key for a customer: a SHA-256 digest, so the list that must
    outlive the erasure does not hold the id itself.

    >>> subject_digest("c1") == subject_digest(" c1".strip()) != subject_digest("c2")
    True
    """
    return hashlib.sha256(f"customer-pulse-erasure:{customer_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Suppression:
    """The marker of an erased customer (value of the ``erasures`` table, by digest)."""

    erased_at: datetime
    request_id: str

    def to_bytes(self) -> bytes:
        return json.dumps({"erased_at": self.erased_at.isoformat(), "request_id": self.request_id}).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Suppression:
        data = json.loads(value)
        return cls(datetime.fromisoformat(data["erased_at"]), data["request_id"])


def resumes(suppression: Suppression, event_time: datetime, analytics_consent: bool | None) -> bool:
    """Whether an event of an erased customer may be profiled again: only with analytics
    consent given in an event after the erasure.

    >>> s = Suppression(datetime(2026, 5, 1), "r1")
    >>> [resumes(s, datetime(2026, 5, 2), c) for c in (True, None, False)], resumes(s, datetime(2026, 4, 30), True)
    ([True, False, False], False)
    """
    return analytics_consent is True and event_time > suppression.erased_at


@dataclass(frozen=True)
class Erasure:
    """What the owning worker did, handed to the Redis sink (through the outbox), which finishes
    the erasure in Redis and writes the receipt."""

    request_id: str
    customer_id: str
    requested_at: str
    partition: int
    tables_cleared_at: str  # state deleted, tombstone queued, sweep index and population updated
    had_state: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Erasure:
        return cls(**json.loads(text))
