"""RFM scoring from incremental histograms agrees with the exact batch computation."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.rfm import Population, RawRfmValues, exact_scores

values = st.builds(RawRfmValues, last_purchase_day=st.integers(9000, 9800),
                   orders=st.integers(1, 60), monetary_cents=st.integers(0, 5_000_000))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), values, min_size=1, max_size=60))
def test_recency_and_frequency_scores_are_exact(population: dict[str, RawRfmValues]) -> None:
    scorer = _population_of(population.values()).scorer()
    exact = exact_scores(population)
    for cid, raw in population.items():
        got = scorer.score(raw)
        assert (got.r, got.f) == (exact[cid].r, exact[cid].f)


def test_monetary_scores_match_the_batch_for_at_least_98_percent() -> None:
    rng = random.Random(5)
    population = {f"c{i}": RawRfmValues(rng.randint(9000, 9800), rng.randint(1, 30),
                                        int(rng.lognormvariate(9, 1.2))) for i in range(20_000)}
    scorer = _population_of(population.values()).scorer()
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
