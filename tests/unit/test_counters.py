"""The processing counters: one record per partition and batch, the same totals however the
counts are batched, and the per-counter keys of earlier versions still counted."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from stream.core.counters import by_partition, partition_counts, totals
from stream.core.work import Tables, Work
from stream.infra.metrics import counter_families

NAMES = ("ingest.received", "ingest.accepted", "profile.applied", "ingest.rejected.bad_json", "affinity.orders:*")
counts = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(NAMES), st.integers(0, 5)), max_size=60)


class Recording(dict[str, bytes]):
    """A table that remembers how many times each key was written (a changelog record each)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.writes: Counter[str] = Counter()

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes[key] += 1
        super().__setitem__(key, value)


def _tables(counters: dict[str, bytes]) -> Tables:
    return Tables(state={}, counters=counters, maxima={}, index={})


@given(counts, st.integers(1, 20))
def test_the_totals_are_the_counts_however_they_are_batched(counted: list[tuple[int, str, int]], size: int) -> None:
    table = Recording()
    tables = _tables(table)
    batches = [counted[at:at + size] for at in range(0, len(counted), size)]
    for batch in batches:
        work = Work(tables)
        for partition, name, by in batch:
            work.count(name, partition, by)
        work.flush()
    expected: Counter[tuple[str, str]] = Counter()
    for partition, name, by in counted:
        expected[name, str(partition)] += by
    assert by_partition(table.items()) == {key: n for key, n in expected.items() if n}
    assert totals(table.items()) == dict(sorted(_sum_names(expected).items()))
    # one record per partition and batch that counted anything there, none for a zero
    assert set(table.writes) == {f"*@{p}" for p, _, by in counted if by}
    for partition in range(4):
        batches_counting = sum(1 for batch in batches if any(p == partition and by for p, _, by in batch))
        assert table.writes[f"*@{partition}"] == batches_counting


def _sum_names(expected: Counter[tuple[str, str]]) -> dict[str, int]:
    result: dict[str, int] = {}
    for (name, _), by in expected.items():
        if by:
            result[name] = result.get(name, 0) + by
    return result


def test_counts_an_earlier_version_wrote_per_counter_are_still_counted_and_never_written_again() -> None:
    table = Recording({"ingest.received@0": b"7", "ingest.rejected.bad_json@0": b"2", "profile.applied@1": b"4"})
    work = Work(_tables(table))
    work.count("ingest.received", 0, 3)
    work.count("ingest.rejected.bad_json", 0)
    work.count("profile.applied", 1, 2)
    work.flush()
    assert set(table.writes) == {"*@0", "*@1"}  # the old keys are read, not rewritten
    assert partition_counts(table, 0) == {"ingest.received": 10, "ingest.rejected.bad_json": 3}
    assert totals(table.items()) == {"ingest.received": 10, "ingest.rejected.bad_json": 3, "profile.applied": 6}
    # Prometheus: one sample per counter and partition, the two forms added up, the others at 0
    zeros = {(s.name, s.labels["partition"]) for family in counter_families(table.items()) for s in family.samples
             if not s.value}
    assert ("pulse_alerts_raised_total", "0") in zeros and ("pulse_events_received_total", "1") in zeros
    samples = {(s.name, tuple(sorted(s.labels.items())), s.value)
               for family in counter_families(table.items()) for s in family.samples if s.value}
    assert samples == {
        ("pulse_events_received_total", (("partition", "0"),), 10),
        ("pulse_events_applied_total", (("partition", "1"),), 6),
        ("pulse_events_rejected_total", (("partition", "0"), ("reason", "bad_json")), 3),
    }
