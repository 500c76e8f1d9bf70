from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas import Purchase
from stream.core.validate import MAX_EVENT_BYTES, Rejection, ValidationRules, dead_letter, validate

VALID = {"type": "purchase", "event_id": "e1", "customer_id": "c1",
         "event_time": "2024-03-01T12:00:00+01:00", "order_id": "o1", "total": "10.50"}


def _bytes(**changes: object) -> bytes:
    event = {**VALID, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def test_a_valid_purchase_is_normalised_to_utc() -> None:
    event = validate(_bytes(customer_id="  c1  "))
    assert isinstance(event, Purchase)
    assert event.customer_id == "c1"
    assert event.event_time == datetime(2024, 3, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason", "mentions"),
    [
        (b"", "empty", "no value"),
        (b'{"type": "purchase", ', "not_json", "not JSON"),
        (b"\xff\xfe\x00", "not_utf8", "UTF-8"),
        (_bytes(type="teleport"), "unknown_type", "type"),
        (_bytes(customer_id=...), "missing_field", "customer_id"),
        (_bytes(total="-1"), "invalid_field", "total"),
        (_bytes(total="NaN"), "invalid_field", "total"),
        (_bytes(event_time="2024-03-01T12:00:00"), "invalid_field", "event_time"),
        (_bytes(customer_id="x" * 500), "invalid_field", "customer_id"),
        (_bytes(surprise=1), "unknown_field", "surprise"),
        (b"x" * (MAX_EVENT_BYTES + 1), "too_large", "limit"),
    ],
)
def test_rejections_name_the_reason_and_the_field(raw: bytes, reason: str, mentions: str) -> None:
    result = validate(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert mentions in result.message


def test_a_dead_letter_keeps_the_original_bytes_and_truncates_huge_ones() -> None:
    raw = b"y" * 1000
    letter = dead_letter(raw, b"k", Rejection("too_large", "big"), stage="validate",
                         now=datetime(2024, 1, 1, tzinfo=UTC), max_stored=100)
    assert letter.truncated and letter.original_size == 1000
    assert base64.b64decode(letter.original_b64) == raw[:100]
    assert base64.b64decode(letter.original_key_b64 or "") == b"k"
    small = dead_letter(b"abc", None, Rejection("not_json", "x"), stage="validate",
                        now=datetime(2024, 1, 1, tzinfo=UTC))
    assert not small.truncated and base64.b64decode(small.original_b64) == b"abc"


def test_an_event_far_in_the_future_is_rejected() -> None:
    now = datetime(2024, 3, 1, 11, 0, tzinfo=UTC)
    assert isinstance(validate(_bytes(), now=now), Purchase)  # exactly now
    result = validate(_bytes(event_time="2024-03-01T13:00:00+01:00"), now=now)  # +1h
    assert isinstance(result, Rejection) and result.reason == "future_event_time"
    relaxed = ValidationRules(max_future=timedelta(hours=2))
    assert isinstance(validate(_bytes(event_time="2024-03-01T13:00:00+01:00"), rules=relaxed, now=now),
                      Purchase)


def test_a_total_inconsistent_with_its_lines_is_rejected_beyond_the_tolerance() -> None:
    items = [{"sku": "a", "quantity": 2, "unit_price": "5.00"},
             {"sku": "b", "quantity": 1, "unit_price": "1.50"}]
    now = datetime(2024, 3, 2, tzinfo=UTC)
    assert isinstance(validate(_bytes(items=items, total="11.50"), now=now), Purchase)
    assert isinstance(validate(_bytes(items=items, total="10.50", discount="1.00"), now=now), Purchase)
    result = validate(_bytes(items=items, total="12.00"), now=now)
    assert isinstance(result, Rejection) and result.reason == "inconsistent_total"
    assert "total" in result.message
    assert isinstance(validate(_bytes(items=items, total="12.00"), now=now,
                               rules=ValidationRules(total_tolerance=Decimal("1"))), Purchase)
