from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream.core.dedup import Admission, DedupPolicy, admit, decode, remember, remembered

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_ids_are_forgotten_past_the_horizon_and_capped_in_count() -> None:
    policy = DedupPolicy(lateness=timedelta(days=1), horizon=timedelta(days=2), max_ids=20)
    seen = ""
    evicted_total = 0
    for hour in range(0, 24 * 10, 2):
        when = T0 + timedelta(hours=hour)
        seen, evicted = remember(seen, f"e{hour}", when, when, policy)
        evicted_total += evicted
        assert remembered(seen) <= 20
        assert all(day >= (when - policy.horizon).timestamp() // 86_400 for day, _ in decode(seen))
    last = T0 + timedelta(hours=238)
    assert admit(seen, last, "e238", last, policy) is Admission.DUPLICATE
    assert admit(seen, last, "e200", T0 + timedelta(hours=200), policy) is Admission.DUPLICATE  # 20th newest
    # e198 was evicted by the cap: no longer known, so judged on its time alone
    assert admit(seen, last, "e198", T0 + timedelta(hours=198), policy) is Admission.TOO_LATE
    assert evicted_total > 0  # 12 ids a day over a 2-3 day horizon: the cap of 20 bites


def test_within_the_horizon_a_redelivery_is_a_duplicate_even_if_older_than_the_lateness() -> None:
    policy = DedupPolicy(lateness=timedelta(hours=1), horizon=timedelta(days=5))
    newest = T0 + timedelta(days=2)
    seen, _ = remember("", "old", T0, newest, policy)
    assert admit(seen, newest, "old", T0, policy) is Admission.DUPLICATE
    assert admit(seen, newest, "other", T0, policy) is Admission.TOO_LATE


def test_memory_stays_small_whatever_the_ids_look_like() -> None:
    policy = DedupPolicy(max_ids=256)
    seen = ""
    for i in range(5000):
        when = T0 + timedelta(minutes=i)
        seen, _ = remember(seen, f"a-very-long-event-identifier-{i:010d}-from-some-upstream-system", when, when,
                           policy)
    assert remembered(seen) == 256
    assert len(seen) < 2200  # 256 x 6-byte digests, base64


def test_events_before_1970_are_handled() -> None:
    old = datetime(1960, 5, 1, tzinfo=UTC)
    seen, _ = remember("", "x", old, old, DedupPolicy())
    assert admit(seen, old, "x", old, DedupPolicy()) is Admission.DUPLICATE


def test_a_horizon_shorter_than_the_lateness_is_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        DedupPolicy(lateness=timedelta(days=2), horizon=timedelta(days=1))
