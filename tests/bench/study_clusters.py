"""Study of the behavioural clusters against River's online clusterers, without I/O
(the table in docs/api.md#behavioural-clusters).

    .venv/bin/python -m tests.bench.study_clusters [--seeds 1,2,3,4,5] [--customers 1000] [--k 4]

For each seed: a generated year with four planted behaviour groups (churn and seasonality off)
is folded into customer states as a worker would. Ours: the bottom-k samples of four
partitions, fitted at mid-year, then refitted at year end from the mid-year model. River's
KMeans, CluStream and DenStream (given k = 4) learn each customer's vector at every purchase
and every 50th event, in event order, scaled like ours. Printed per method: the adjusted Rand
index of the year-end assignment against the planted groups, and the share of customers the
mid-year and year-end models put under the same id.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from river import cluster
from river.metrics import AdjustedRand

from schemas import CustomerState, parse_event
from stream.core.clusters import FEATURES, BottomK, ClusterModel, Vector, behaviour_vector, fit
from stream.core.fold import apply_event
from stream.core.owner import owner_partition
from stream.io.generate import PopulationSpec, generate

PARTITIONS = 4


def _ari(truth: Sequence[str], found: Sequence[Any]) -> float:
    metric = AdjustedRand()
    for t, f in zip(truth, found, strict=True):
        metric.update(t, f)
    return float(metric.get())


def _same(a: Sequence[Any], b: Sequence[Any]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def _sample(vectors: dict[str, Vector]) -> list[Vector]:
    samples: dict[int, BottomK] = {}
    for customer_id, vector in vectors.items():
        samples.setdefault(owner_partition(customer_id, PARTITIONS), BottomK({})).offer(customer_id, vector)
    return [v for s in samples.values() for v in s.members.values()]


def study(seed: int, customers: int, k: int) -> dict[str, tuple[float, float]]:
    events, truth = generate(PopulationSpec(customers=customers, days=365, seed=seed, churn_share=0.0,
                                            seasonal_share=0.0, behaviour_groups=True))
    group = {t.customer_id: str(t.group) for t in truth}
    states: dict[str, CustomerState] = {}
    stream: list[Vector] = []
    snapshots: list[dict[str, Vector]] = []
    for i, raw in enumerate(events, 1):
        event = parse_event(json.dumps(raw))
        state = apply_event(states.get(event.customer_id) or CustomerState(customer_id=event.customer_id), event)[0]
        states[event.customer_id] = state
        if raw["type"] == "purchase" or i % 50 == 0:
            vector = behaviour_vector(state)
            if vector is not None:
                stream.append(vector)
        if i in (len(events) // 2, len(events)):
            snapshots.append({c: v for c, s in states.items() if (v := behaviour_vector(s)) is not None})
    middle = fit(_sample(snapshots[0]), clusters=k)
    final = fit(_sample(snapshots[1]), previous=middle)
    ids = sorted(snapshots[1])
    vectors = [snapshots[1][c] for c in ids]
    planted = [group[c] for c in ids]
    results = {"ours": (_ari(planted, [final.assign(v)[0] for v in vectors]),
                        _same([middle.assign(v)[0] for v in vectors], [final.assign(v)[0] for v in vectors]))}
    for name, make in _river(k).items():
        results[f"river {name}"] = _online(make(), stream, vectors, planted, final)
    return results


def _river(k: int) -> dict[str, Callable[[], Any]]:
    return {"KMeans": lambda: cluster.KMeans(n_clusters=k, halflife=0.1, sigma=1, seed=1),
            "CluStream": lambda: cluster.CluStream(n_macro_clusters=k, seed=1, time_gap=2000, max_micro_clusters=50),
            "DenStream": lambda: cluster.DenStream(decaying_factor=0.01, beta=0.5, mu=2.5, epsilon=0.5,
                                                   n_samples_init=200)}


def _online(model: Any, stream: list[Vector], vectors: list[Vector], planted: list[str],
            scaler: ClusterModel) -> tuple[float, float]:
    def scaled(vector: Vector) -> dict[str, float]:
        return dict(zip(FEATURES, scaler.scaled(vector), strict=True))

    middle: list[int] = []
    for j, vector in enumerate(stream):
        model.learn_one(scaled(vector))
        if j == len(stream) // 2:
            middle = [model.predict_one(scaled(v)) for v in vectors]
    final = [model.predict_one(scaled(v)) for v in vectors]
    return _ari(planted, final), _same(middle, final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--k", type=int, default=4, help="our clusters (River's learners are given 4)")
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.monotonic()
        ours = study(seed, args.customers, args.k)
        for name, pair in ours.items():
            rows.setdefault(name, []).append(pair)
        found = "; ".join(f"{name} ARI {ari:.3f} same id {same:.3f}" for name, (ari, same) in ours.items())
        print(f"seed {seed} ({time.monotonic() - started:.0f} s): {found}", flush=True)
    for name, seeds in rows.items():
        aris, sames = [a for a, _ in seeds], [s for _, s in seeds]
        print(f"{name:<16} ARI {', '.join(f'{a:.3f}' for a in aris)} (mean {sum(aris) / len(aris):.3f}); "
              f"same id {', '.join(f'{s:.3f}' for s in sames)} (mean {sum(sames) / len(sames):.3f})")


if __name__ == "__main__":
    main()
