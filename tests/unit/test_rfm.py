"""RFM scoring from incremental histograms agrees with the exact batch computation."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.rfm import Cuts, PartitionIndex, Population, RawRfmValues, exact_scores

values = st.builds(RawRfmValues, last_purchase_day=st.integers(9000, 9800),
                   orders=st.integers(1, 60), monetary_cents=st.integers(0, 5_000_000))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), values, min_size=1, max_size=60))
def test_recency_and_frequency_scores_are_exact(population: dict[str, RawRfmValues]) -> None:
    scorer = _population_of(population.values()).cuts()
    exact = exact_scores(population)
    for cid, raw in population.items():
        got = scorer.score(raw)
        assert (got.r, got.f) == (exact[cid].r, exact[cid].f)


def test_monetary_scores_match_the_batch_for_at_least_98_percent() -> None:
    rng = random.Random(5)
    population = {f"c{i}": RawRfmValues(rng.randint(9000, 9800), rng.randint(1, 30),
                                        int(rng.lognormvariate(9, 1.2))) for i in range(20_000)}
    scorer = _population_of(population.values()).cuts()
    exact = exact_scores(population)
    agree = sum(1 for cid, raw in population.items() if scorer.score(raw) == exact[cid])
    assert agree / len(population) >= 0.98


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), values), min_size=1, max_size=80), st.integers(1, 4))
def test_incremental_updates_and_merging_equal_a_fresh_build(updates: list[tuple[int, RawRfmValues]],
                                                             parts: int) -> None:
    # Customers change value over time; each lives in one of `parts` partitions.
    partitions = [Population() for _ in range(parts)]
    current: dict[int, RawRfmValues] = {}
    for customer, new in updates:
        partitions[customer % parts].replace(current.get(customer), new)
        current[customer] = new
    merged = Population.merge(partitions)
    fresh = _population_of(current.values())
    assert merged.to_json() == fresh.to_json()
    assert Population.from_json(merged.to_json()) == merged


def _population_of(items) -> Population:  # type: ignore[no-untyped-def]
    population = Population()
    for raw in items:
        population.add(raw)
    return population


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), values), min_size=1, max_size=80), st.integers(1, 4))
def test_rescoring_only_customers_between_moved_cuts_keeps_every_score_current(
        updates: list[tuple[int, RawRfmValues]], parts: int) -> None:
    # What the workers do: each partition scores its changed customer with the cuts it last
    # applied; on a tick it moves to the merged population's cuts and rescores only the
    # customers between old and new cuts. Afterwards every stored score is the fresh one.
    indexes = [PartitionIndex() for _ in range(parts)]
    applied = [Cuts() for _ in range(parts)]
    current: dict[int, RawRfmValues] = {}
    stored: dict[int, object] = {}

    def tick(p: int) -> None:
        new = Population.merge(i.population for i in indexes).cuts()
        for cid in indexes[p].members_between(applied[p].moved(new)):
            stored[int(cid)] = new.score(current[int(cid)])
        applied[p] = new

    for step, (customer, new) in enumerate(updates):
        p = customer % parts
        indexes[p].replace(str(customer), current.get(customer), new)
        current[customer] = new
        stored[customer] = applied[p].score(new)
        if step % 3 == 0:
            tick(step % parts)
    for p in range(parts):
        tick(p)
    fresh = Population.merge(i.population for i in indexes).cuts()
    assert stored == {cid: fresh.score(raw) for cid, raw in current.items()}
