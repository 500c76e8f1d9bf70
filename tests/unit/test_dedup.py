from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream.dedup import Admission, DedupPolicy, admit, remember

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_ids_are_forgotten_past_the_horizon_and_capped_in_count() -> None:
    policy = DedupPolicy(lateness=timedelta(hours=1), horizon=timedelta(hours=2), max_ids=3)
    seen: tuple[tuple[str, int], ...] = ()
    evicted_total = 0
    for minute in range(0, 300, 10):
        when = T0 + timedelta(minutes=minute)
        seen, evicted = remember(seen, f"e{minute}", when, when, policy)
        evicted_total += evicted
        assert len(seen) <= 3
        assert all(t >= int((when - policy.horizon).timestamp()) for _, t in seen)
    assert [i for i, _ in seen] == ["e270", "e280", "e290"]
    assert evicted_total > 0  # 10-minute spacing puts 12 ids in the 2-hour horizon: the cap bites


def test_within_the_horizon_a_redelivery_is_a_duplicate_even_if_older_than_the_lateness() -> None:
    policy = DedupPolicy(lateness=timedelta(hours=1), horizon=timedelta(hours=5))
    seen, _ = remember((), "old", T0, T0 + timedelta(hours=2), policy)
    assert admit(seen, T0 + timedelta(hours=2), "old", T0, policy) is Admission.DUPLICATE
    assert admit(seen, T0 + timedelta(hours=2), "other", T0, policy) is Admission.TOO_LATE


def test_a_horizon_shorter_than_the_lateness_is_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        DedupPolicy(lateness=timedelta(days=2), horizon=timedelta(days=1))
