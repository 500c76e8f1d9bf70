"""Bytes in, a valid event or a rejection (stable reason code + message naming the field and rule)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import ValidationError

from schemas import EVENT_ADAPTER, Event, Purchase
from schemas.deadletter import DeadLetter
from schemas.events import ID_REQUIRED

MAX_EVENT_BYTES = 64 * 1024
MAX_STORED_BYTES = 256 * 1024


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str


@dataclass(frozen=True)
class ValidationRules:
    """Business rules beyond the schema (all configurable through ``Settings``)."""

    max_bytes: int = MAX_EVENT_BYTES
    total_tolerance: Decimal = Decimal("0.01")
    max_future: timedelta = timedelta(minutes=5)


DEFAULT_RULES = ValidationRules()


def validate(raw: bytes | None, *, rules: ValidationRules = DEFAULT_RULES,
             now: datetime | None = None) -> Event | Rejection:
    """Decode and check one record from ``pulse.events``.

    >>> validate(b'{"type": "nope"}').reason
    'unknown_type'
    >>> validate(b'\\xff\\xfe').reason
    'not_utf8'
    """
    max_bytes = rules.max_bytes
    if raw is None or len(raw) == 0:
        return Rejection("empty", "the record has no value")
    if len(raw) > max_bytes:
        return Rejection("too_large", f"payload is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        # One parse: pydantic's JSON parser reports malformed JSON (and nesting too deep)
        # as ``json_invalid``.
        event = EVENT_ADAPTER.validate_json(text)
    except ValidationError as exc:
        return _describe(exc)
    return _check_rules(event, rules, now or datetime.now(UTC))


def _check_rules(event: Event, rules: ValidationRules, now: datetime) -> Event | Rejection:
    if event.event_time > now + rules.max_future:
        return Rejection("future_event_time",
                         f"event_time: {event.event_time.isoformat()} is more than "
                         f"{rules.max_future} ahead of the processing time")
    if isinstance(event, Purchase) and event.items:
        lines = sum((item.unit_price * item.quantity for item in event.items), Decimal(0))
        expected = lines - event.discount
        if abs(expected - event.total) > rules.total_tolerance:
            return Rejection("inconsistent_total",
                             f"total: {event.total} differs from the lines ({lines}) minus discount "
                             f"({event.discount}) by more than {rules.total_tolerance}")
    return event


def _describe(exc: ValidationError) -> Rejection:
    first = exc.errors()[0]
    location = ".".join(str(p) for p in first["loc"]) or "(event)"
    kind = first["type"]
    if kind == "json_invalid":
        return Rejection("not_json", f"payload is not JSON: {first['ctx'].get('error', first['msg'])}")
    if kind == "union_tag_invalid":
        return Rejection("unknown_type", f"type: {first['msg']}")
    if kind == "union_tag_not_found":
        return Rejection("missing_field", "type: the event has no 'type' field")
    if kind == "missing":
        return Rejection("missing_field", f"{location}: field required")
    if kind == ID_REQUIRED:
        return Rejection("missing_field", first["msg"])
    if kind == "extra_forbidden":
        return Rejection("unknown_field", f"{location}: not a field of this event type")
    return Rejection("invalid_field", f"{location}: {first['msg']}")


def dead_letter(raw: bytes | None, key: bytes | None, rejection: Rejection, *, stage: str,
                now: datetime, topic: str | None = None, partition: int | None = None,
                offset: int | None = None, max_stored: int = MAX_STORED_BYTES) -> DeadLetter:
    payload = raw or b""
    return DeadLetter(
        reason=rejection.reason,
        message=rejection.message,
        stage=stage,
        failed_at=now,
        original_key_b64=base64.b64encode(key).decode() if key is not None else None,
        original_b64=base64.b64encode(payload[:max_stored]).decode(),
        original_size=len(payload),
        truncated=len(payload) > max_stored,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
    )
