"""Behavioural clusters (stream/core/clusters.py): the bounded sample, the fit and its stable
ids, the profile fields, and the sample's place in the population book."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from river.metrics import AdjustedRand

from schemas import CustomerState
from stream.core.clusters import FEATURES, BottomK, ClusterModel, behaviour_vector, fit, sample_key, sample_point
from stream.core.fold import to_profile
from stream.core.owner import owner_partition
from stream.core.population import PopulationBook
from stream.core.rfm import Population

# Four planted behaviours in feature space (rates and basket on a log scale, conversion log, channel shares)
PLANTED = {
    "frequent_small": (1.9, 2.7, 2.8, -0.9, 0.1, 0.8, 0.1, 0.03),
    "rare_large": (0.5, 5.4, 1.2, -1.2, 0.1, 0.1, 0.8, 0.03),
    "browser": (0.4, 3.7, 2.4, -3.0, 0.8, 0.1, 0.1, 0.01),
    "regular": (0.9, 4.0, 2.2, -1.6, 0.8, 0.1, 0.1, 0.04),
}


def _planted(rng: random.Random, per_group: int) -> tuple[list[tuple[float, ...]], list[str]]:
    points, groups = [], []
    for group, centre in PLANTED.items():
        for _ in range(per_group):
            noisy = [c + rng.gauss(0, 0.15) for c in centre]
            channel = [max(0.0, v) for v in noisy[4:7]]
            total = sum(channel) or 1.0
            points.append(tuple(round(v, 4) for v in (*noisy[:4], *(v / total for v in channel), abs(noisy[7]))))
            groups.append(group)
    return points, groups


def _ari(truth: list[str], found: list[int]) -> float:
    metric = AdjustedRand()
    for t, f in zip(truth, found, strict=True):
        metric.update(t, f)
    return float(metric.get())


def test_the_fit_finds_planted_groups_and_is_the_same_in_any_order() -> None:
    points, groups = _planted(random.Random(5), 60)
    model = fit(points, clusters=4)
    assert _ari(groups, [model.assign(p)[0] for p in points]) >= 0.95
    shuffled = points[:]
    random.Random(1).shuffle(shuffled)
    assert fit(shuffled, clusters=4) == model  # every worker fits the same model from the same sample
    assert sorted(model.sizes) == [60, 60, 60, 60] and model.sample == 240
    described = {model.describe(model.assign(points[0])[0])}  # a frequent_small customer's cluster
    assert any("buys often" in d for d in described), described


def test_a_refit_keeps_each_clusters_id_as_the_population_drifts() -> None:
    rng = random.Random(8)
    points, groups = _planted(rng, 50)
    first = fit(points, clusters=4)
    ids = {g: first.assign(p)[0] for p, g in zip(points, groups, strict=True)}
    # the population moves: every group's purchase rate rises, and a new set of customers is sampled
    drifted, drifted_groups = _planted(rng, 50)
    drifted = [(p[0] + 0.3, *p[1:]) for p in drifted]
    second = fit(drifted, previous=first)
    assert second.k == first.k and second.version != first.version
    assert all(second.assign(p)[0] == ids[g] for p, g in zip(drifted, drifted_groups, strict=True))


def test_when_a_behaviour_vanishes_the_others_keep_their_ids() -> None:
    from collections import Counter

    points, groups = _planted(random.Random(2), 40)
    first = fit(points, clusters=4)
    gone = first.assign(points[0])[0]
    kept = [(p, g) for p, g in zip(points, groups, strict=True) if first.assign(p)[0] != gone]
    second = fit([p for p, _ in kept], previous=first)
    assert second.k == 4
    for group in {g for _, g in kept}:  # each remaining group's customers keep (at least mostly) their id
        before = Counter(first.assign(p)[0] for p, g in kept if g == group).most_common(1)[0][0]
        after = Counter(second.assign(p)[0] for p, g in kept if g == group)
        assert after[before] > sum(after.values()) / 2, (group, before, after)


def test_too_few_customers_is_a_clear_error_not_a_model() -> None:
    import pytest

    from stream.core.clusters import FitError

    with pytest.raises(FitError, match="clustering needs"):
        fit([(0.0,) * len(FEATURES)] * 5)


def test_the_model_round_trips_through_its_published_json() -> None:
    points, _ = _planted(random.Random(3), 30)
    model = fit(points)
    document = json.loads(json.dumps(model.to_json()))
    assert ClusterModel.from_json(document) == model
    assert [c["id"] for c in document["clusters"]] == list(range(model.k))
    assert all(c["description"] for c in document["clusters"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.floats(-5, 5, allow_nan=False)), min_size=1, max_size=120),
       st.integers(1, 12))
def test_the_sample_is_the_bottom_k_of_the_customers_in_any_arrival_order(
        offers: list[tuple[int, float]], size: int) -> None:
    sample = BottomK({}, size=size)
    latest: dict[str, tuple[float, ...]] = {}
    for who, value in offers:
        customer_id = f"c-{who}"
        sample.offer(customer_id, (value,))
        latest[customer_id] = (value,)
    expected = sorted(latest, key=sample_point)[:size]
    assert sorted(sample.members) == sorted(sample_key(c) for c in expected)  # by a digest: no id in the shares
    assert all(sample.members[sample_key(c)] == latest[c] for c in expected)  # members carry their newest vector


def _state(customer_id: str, sessions: int, orders: int, channel: str) -> CustomerState:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return CustomerState(customer_id=customer_id, sessions=sessions, orders=orders, events=sessions * 4,
                         monetary_cents=orders * 4_000, first_seen_at=start, last_event_at=start + timedelta(days=90),
                         channel_counts={channel: sessions * 4})


def test_a_rebuilt_book_holds_the_same_sample_as_the_one_kept_up_to_date() -> None:
    partitions, states = 2, {}
    live = PopulationBook(partitions, states, {})
    rng = random.Random(4)
    for i in range(600):
        customer_id = f"b-{i}"
        partition = owner_partition(customer_id, partitions)
        live.index(partition)
        new = _state(customer_id, rng.randint(1, 30), rng.randint(0, 10), rng.choice(["web", "app"]))
        live.update(partition, customer_id, CustomerState(customer_id=customer_id), new)
        states[customer_id] = new.model_dump_json().encode()
    rebuilt = PopulationBook(partitions, states, {})
    for partition in range(partitions):
        assert rebuilt.index(partition).population.behaviour == live.index(partition).population.behaviour
    merged = live.merged().behaviour
    assert 0 < len(merged) <= 2 * 256
    assert Population.from_json(json.loads(json.dumps(live.merged().to_json()))).behaviour == merged


def test_the_profile_carries_the_nearest_cluster_and_its_distance() -> None:
    rng = random.Random(6)
    states = [_state(f"p-{i}", rng.randint(3, 40), rng.randint(0, 12), rng.choice(["web", "app", "store"]))
              for i in range(200)]
    vectors = [v for v in map(behaviour_vector, states) if v is not None]
    model = fit(vectors, clusters=3)
    at = datetime(2024, 4, 1, tzinfo=UTC)
    profile = to_profile(states[0], at, clusters=model)
    vector = behaviour_vector(states[0])
    assert vector is not None and (profile.cluster, profile.cluster_distance) == model.assign(vector)
    assert profile.cluster_model == model.version
    assert to_profile(states[0], at).cluster is None  # no clusters fitted yet: no field
    newcomer = _state("p-new", 1, 0, "web")  # one session: too little behaviour to cluster
    assert behaviour_vector(newcomer) is None and to_profile(newcomer, at, clusters=model).cluster is None


def test_a_clearly_better_partition_replaces_a_poor_one_under_the_previous_ids() -> None:
    points, groups = _planted(random.Random(9), 50)
    good = fit(points, clusters=4)
    by_group = {g: good.assign(p)[0] for p, g in zip(points, groups, strict=True)}
    a, b, c, d = (good.centroids[by_group[g]] for g in ("frequent_small", "rare_large", "browser", "regular"))
    far = tuple(v + 10 for v in a)
    middle = tuple((x + y) / 2 for x, y in zip(c, d, strict=True))  # browser and regular taken as one
    poor = ClusterModel((b, a, middle, far), good.means, good.scales, (50, 50, 100, 0), 200, "poor")
    refit = fit(points, previous=poor)
    found = {g: refit.assign(p)[0] for p, g in zip(points, groups, strict=True)}
    assert _ari(groups, [refit.assign(p)[0] for p in points]) >= 0.95  # the better partition won
    assert (found["rare_large"], found["frequent_small"]) == (0, 1)  # under the ids they had
    assert {found["browser"], found["regular"]} == {2, 3}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(-10**9, 10**9), st.integers(0, 10_000),
       st.dictionaries(st.sampled_from(["web", "app", "store", "kiosk"]), st.integers(0, 10_000)),
       st.integers(0, 3_000))
def test_any_state_gives_a_finite_vector_or_none(sessions: int, orders: int, monetary: int, refunds: int,
                                                 channels: dict[str, int], span_days: int) -> None:
    import math

    start = datetime(2024, 1, 1, tzinfo=UTC)
    state = CustomerState(customer_id="x", sessions=sessions, orders=orders, monetary_cents=monetary,
                          refunds=refunds, channel_counts=channels, first_seen_at=start,
                          last_event_at=start + timedelta(days=span_days))
    vector = behaviour_vector(state)  # on the per-event path: it must never raise
    assert vector is None or (len(vector) == len(FEATURES) and all(math.isfinite(v) for v in vector))


def test_a_refit_starts_from_the_clusters_any_worker_published_last() -> None:
    from stream.core.clusters import starting_point

    points, _ = _planted(random.Random(7), 30)
    mine, theirs = fit(points, clusters=4), fit(points[5:], clusters=4)
    assert mine.version != theirs.version
    published = json.loads(json.dumps(theirs.to_json()))
    # a restarted worker, and one whose clusters another worker has since replaced: the published ones
    assert starting_point(None, published, 4, None) == (theirs, None)
    assert starting_point(mine, published, 4, mine.version) == (theirs, None)
    # its own published last, or an older one left in Redis because its newer write failed: its own
    assert starting_point(theirs, published, 4, theirs.version) == (theirs, None)
    assert starting_point(mine, published, 4, theirs.version) == (mine, None)
    # another number of clusters configured, or an unreadable document: passed over, with the reason
    start, why = starting_point(None, published, 5, None)
    assert start is None and why is not None and "PULSE_CLUSTERS=5 but 4 are published" in why
    start, why = starting_point(mine, {"version": "x"}, 4, None)
    assert start is mine and why is not None and "cannot be read" in why
