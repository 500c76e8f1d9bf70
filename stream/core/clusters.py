"""Behavioural clusters: k-means over each customer's scaled behaviour, kept current as the
population changes, with cluster ids that stay put.

A customer's behaviour is eight numbers derived from the state (:func:`behaviour_vector`):
how often they buy and browse (per 30 days of their active span, log scale), their mean
basket (log), conversion (orders per session), their channel shares and refund rate.

The population is summarised by a bounded, mergeable sample: each partition keeps the
:data:`SAMPLE_PER_PARTITION` customers whose keyed hash of the id is smallest (bottom-k), with
their current vectors (``stream/core/rfm.py``'s ``Population.behaviour``), so the sample of the
merged population is the union of the partitions' and the same on every worker, and a
restarted worker rebuilds it from its tables.

:func:`fit` runs Lloyd's k-means (SciPy's ``kmeans2``) over the merged sample, z-scaled by the
sample itself. The first fit seeds k-means++ deterministically; every later fit starts from the
previous centroids, so cluster ``i`` stays cluster ``i`` as the population drifts, unless fresh
starts find a clearly better partition, whose clusters then take the ids of the previous
centroids they are matched to. River's streaming k-means, CluStream and DenStream were measured
against this on planted behaviour groups and kept ids less well
(``docs/api.md#behavioural-clusters``); they also learn one stream each, which two workers
cannot merge.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2, vq
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from schemas import CustomerState

FEATURES = ("purchase_rate", "basket", "browse_rate", "conversion", "web", "app", "store", "refund_rate")
_WORDS = {  # (above the population, below it)
    "purchase_rate": ("buys often", "buys rarely"), "basket": ("large baskets", "small baskets"),
    "browse_rate": ("browses a lot", "browses little"), "conversion": ("converts well", "rarely converts"),
    "web": ("web", "little web"), "app": ("app", "little app"), "store": ("store", "little store"),
    "refund_rate": ("refunds often", "few refunds"),
}
CHANNELS = ("web", "app", "store")
BASKET = FEATURES.index("basket")
# The three channel shares are one behaviour (where a customer shops): together they weigh as one feature.
WEIGHTS = (1.0, 1.0, 1.0, 1.0, 3 ** -0.5, 3 ** -0.5, 3 ** -0.5, 1.0)
MIN_SESSIONS = 3  # fewer sessions say too little about a customer's behaviour
MIN_SPAN_DAYS = 30.0  # rates over shorter spans are per 30 days all the same
REFUND_PRIOR_ORDERS = 3  # one refund of a first order is not a refund rate of 100%
CLIP = 3.0  # standard deviations: outliers pull no centroid of their own beyond this
SAMPLE_PER_PARTITION = 256
MAX_CLUSTERS = 8
MIN_POINTS_PER_CLUSTER = 10
BETTER = 0.01  # a fresh partition replaces the warm-started one when its inertia is this much lower (hysteresis)
INITS = 8  # k-means++ starts per k (a single start often merges two groups and splits a third)
NAMESPACE = b"customer-pulse/clusters/v1:"

Vector = tuple[float, ...]


def sample_point(customer_id: str) -> float:
    """The customer's fixed place in [0, 1) for the bottom-k sample (from their :func:`sample_key`).

    >>> sample_point("c-1") == sample_point("c-1"), 0 <= sample_point("c-2") < 1
    (True, True)
    """
    return _point(sample_key(customer_id))


def behaviour_vector(state: CustomerState) -> Vector | None:
    """The customer's behaviour features (in :data:`FEATURES` order), or None before
    :data:`MIN_SESSIONS` sessions.

    >>> from datetime import UTC, datetime
    >>> state = CustomerState(customer_id="c", sessions=12, orders=3, monetary_cents=15_000,
    ...     first_seen_at=datetime(2024, 1, 1, tzinfo=UTC), last_event_at=datetime(2024, 3, 1, tzinfo=UTC),
    ...     channel_counts={"app": 30, "web": 10})
    >>> behaviour_vector(state)
    (0.9163, 3.9318, 1.9459, -1.3122, 0.25, 0.75, 0.0, 0.0)
    """
    first, last = state.first_seen_at, state.last_event_at
    if state.sessions < MIN_SESSIONS or first is None or last is None:
        return None
    months = max((last - first).total_seconds() / 86_400, MIN_SPAN_DAYS) / 30
    orders = state.orders
    seen = sum(state.channel_counts.get(c, 0) for c in CHANNELS) or 1
    values = (
        math.log1p(orders / months),
        # (no orders: missing, see scaled; refunds beyond the purchases seen make no negative basket)
        math.log1p(max(state.monetary_cents, 0) / 100 / orders) if orders else 0.0,
        math.log1p(state.sessions / months),
        math.log((orders + 0.5) / (state.sessions + 1)),  # conversion, on a log scale: 5% and 20% differ
        *(state.channel_counts.get(c, 0) / seen for c in CHANNELS),
        state.refunds / (orders + REFUND_PRIOR_ORDERS),
    )
    return tuple(round(v, 4) for v in values)


def sample_key(customer_id: str) -> str:
    """The key a customer's vector is sampled under: a one-way digest of the id, so the shares
    published on ``pulse.rfm-population`` name no customer (and an erasure leaves no id there)."""
    return hashlib.sha256(NAMESPACE + customer_id.encode()).hexdigest()[:24]


def _point(key: str) -> float:
    return int(key[:16], 16) / 2**64


class BottomK:
    """Keeps ``members`` (a partition's ``Population.behaviour``, by :func:`sample_key`) the
    :data:`SAMPLE_PER_PARTITION` customers of smallest :func:`sample_point` among those with a
    vector. A member that loses its vector (an erasure) leaves a gap that the next customer
    offered fills, and the next rebuild from the tables makes exact again.

    >>> sample = BottomK({}, size=2)
    >>> [sample.offer(f"c-{i}", (float(i),)) for i in range(5)].count(True) >= 2, len(sample.members)
    (True, 2)
    >>> kept = [c for c in (f"c-{i}" for i in range(5)) if sample_key(c) in sample.members]
    >>> sample.offer(kept[0], None), len(sample.members)
    (True, 1)
    """

    def __init__(self, members: dict[str, Vector], size: int = SAMPLE_PER_PARTITION) -> None:
        self.members = members
        self.size = size
        self.ceiling = max(map(_point, members), default=0.0)

    def wants(self, customer_id: str) -> bool:
        """Whether the customer's vector would be kept (computing it is then worth it)."""
        key = sample_key(customer_id)  # one digest per event: the point and the membership both come from it
        return len(self.members) < self.size or _point(key) < self.ceiling or key in self.members

    def offer(self, customer_id: str, vector: Vector | None) -> bool:
        """The customer's current vector (None: has none); returns whether the sample changed."""
        members, key = self.members, sample_key(customer_id)
        if vector is None:
            if key not in members:
                return False
            del members[key]
            self.ceiling = max(map(_point, members), default=0.0)
            return True
        if key in members:
            changed = members[key] != vector
            members[key] = vector
            return changed
        point = _point(key)
        if len(members) >= self.size:
            if point >= self.ceiling:
                return False
            del members[max(members, key=_point)]
        members[key] = vector
        self.ceiling = max(map(_point, members))
        return True


@dataclass(frozen=True)
class ClusterModel:
    """Centroids in the raw feature space, the scaler they are compared in, and what each is."""

    centroids: tuple[Vector, ...]
    means: Vector
    scales: Vector
    sizes: tuple[int, ...]  # sampled customers nearest each centroid at the fit
    sample: int
    version: str

    @property
    def k(self) -> int:
        return len(self.centroids)

    def scaled(self, vector: Sequence[float]) -> Vector:
        z = [min(max((v - m) / s, -CLIP), CLIP) for v, m, s in zip(vector, self.means, self.scales, strict=True)]
        if vector[0] == 0.0:  # never bought: the basket is missing, not small (it counts as the mean's)
            z[BASKET] = 0.0
        return tuple(z)

    def assign(self, vector: Sequence[float]) -> tuple[int, float]:
        """The nearest centroid's id and the distance to it, in population standard deviations."""
        point = self.scaled(vector)
        best, best_d2 = 0, math.inf
        for i, centroid in enumerate(self._scaled_centroids):
            d2 = sum((a - b) ** 2 for a, b in zip(point, centroid, strict=True))
            if d2 < best_d2:
                best, best_d2 = i, d2
        return best, round(math.sqrt(best_d2), 3)

    @property
    def _scaled_centroids(self) -> tuple[Vector, ...]:
        cached = self.__dict__.get("_scaled")
        if cached is None:
            cached = tuple(self.scaled(c) for c in self.centroids)
            object.__setattr__(self, "_scaled", cached)
        return cached  # type: ignore[no-any-return]

    def describe(self, cluster: int, top: int = 3) -> str:
        """The features that set a cluster apart: those furthest from the population's mean.

        >>> zero, one = (0.0,) * len(FEATURES), (1.0,) * len(FEATURES)
        >>> model = ClusterModel(((2.0, -1.0, *zero[2:]), zero), zero, one, (5, 5), 10, "v")  # scales of weight 1
        >>> model.describe(0), model.describe(1)
        ('buys often +2.0 sd, small baskets -1.0 sd', "near the population's mean")
        """
        z = [v / w for v, w in zip(self._scaled_centroids[cluster], WEIGHTS, strict=True)]  # unweighted
        ranked = sorted(((abs(v), name, v) for name, v in zip(FEATURES, z, strict=True)), reverse=True)
        parts = [f"{_WORDS[name][0 if v > 0 else 1]} {v:+.1f} sd"
                 for size, name, v in ranked[:top] if size >= 0.5]
        return ", ".join(parts) or "near the population's mean"

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "k": self.k, "features": list(FEATURES), "sample": self.sample,
                "means": list(self.means), "scales": list(self.scales),
                "clusters": [{"id": i, "size": self.sizes[i], "centroid": dict(zip(FEATURES, c, strict=False)),
                              "description": self.describe(i)} for i, c in enumerate(self.centroids)]}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ClusterModel:
        clusters: list[dict[str, object]] = data["clusters"]  # type: ignore[assignment]
        return cls(centroids=tuple(tuple(float(c["centroid"][f]) for f in FEATURES)  # type: ignore[index]
                                   for c in clusters),
                   means=tuple(float(v) for v in data["means"]),  # type: ignore[attr-defined]
                   scales=tuple(float(v) for v in data["scales"]),  # type: ignore[attr-defined]
                   sizes=tuple(int(c["size"]) for c in clusters),  # type: ignore[call-overload]
                   sample=int(data["sample"]), version=str(data["version"]))  # type: ignore[call-overload]


def starting_point(current: ClusterModel | None, stored: Mapping[str, object] | None, wanted: int,
                   ours: str | None) -> tuple[ClusterModel | None, str | None]:
    """The clusters a refit starts from, and why the published ones were passed over (if so).

    Every worker starts from the clusters last published by any worker (``stored``: the
    ``pulse:clusters`` document), so their ids agree across workers and survive restarts; unless
    those are already ``current``, or are older than ``ours`` (the version this worker last
    published: its own newer write failed), or cannot be read, or have another number of
    clusters than the ``wanted`` ``PULSE_CLUSTERS`` (then a fresh fit chooses new ids).

    >>> starting_point(None, None, 5, None)
    (None, None)
    """
    if stored is None:
        return current, None
    try:
        published = ClusterModel.from_json(stored)
    except (KeyError, TypeError, ValueError) as exc:
        return current, f"the published clusters cannot be read ({type(exc).__name__}: {exc})"
    if wanted and wanted != published.k:
        return (current if current is not None and current.k == wanted else None,
                f"PULSE_CLUSTERS={wanted} but {published.k} are published: fitting {wanted} (ids change)")
    if current is None or published.version not in (current.version, ours):
        return published, None
    return current, None


class FitError(ValueError):
    """Too few sampled customers to cluster yet."""


def fit(points: Sequence[Vector], previous: ClusterModel | None = None, clusters: int = 0) -> ClusterModel:
    """k-means over ``points``: from ``previous``'s centroids when given (same k, same ids), else
    k = ``clusters`` or, when 0, the k in 2..:data:`MAX_CLUSTERS` of best silhouette.
    Deterministic: the same points (in any order) give the same model.

    >>> import random
    >>> rng = random.Random(1)
    >>> blobs = [tuple(rng.gauss(c, 0.3) for _ in FEATURES) for c in (1, 4, 7) for _ in range(40)]
    >>> model = fit(blobs)
    >>> model.k, sorted(model.sizes), fit(list(reversed(blobs))).version == model.version
    (3, [40, 40, 40], True)
    >>> fit(blobs, previous=model).assign(blobs[0])[0] == model.assign(blobs[0])[0]
    True
    """
    data = np.array(sorted(points), dtype=float)
    k_min = previous.k if previous is not None else (clusters or 2)
    if len(data) < MIN_POINTS_PER_CLUSTER * k_min:
        raise FitError(f"{len(data)} sampled customers with a behaviour; clustering needs "
                       f"{MIN_POINTS_PER_CLUSTER * k_min}")
    means, scales = data.mean(axis=0), data.std(axis=0)
    buyers = data[:, 0] > 0
    if buyers.any():  # the basket of customers who never bought is missing: scaled over buyers, then the mean
        means[BASKET], scales[BASKET] = data[buyers, BASKET].mean(), data[buyers, BASKET].std()
    scales[scales < 1e-6] = 1.0
    scales = scales / np.array(WEIGHTS)  # a feature's distances count in proportion to its weight
    scaled = np.clip((data - means) / scales, -CLIP, CLIP)
    scaled[~buyers, BASKET] = 0.0
    if previous is not None:
        centroids, labels = _refit(scaled, np.clip((np.array(previous.centroids) - means) / scales, -CLIP, CLIP))
    else:
        candidates = [clusters] if clusters else range(2, MAX_CLUSTERS + 1)
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for k in candidates:
            if len(scaled) < MIN_POINTS_PER_CLUSTER * k:
                break
            found, labels = _best_of(scaled, k)
            quality = _silhouette(scaled, labels) if not clusters else 0.0
            if best is None or quality > best[0] + 1e-9:
                best = (quality, found, labels)
        assert best is not None
        _, centroids, labels = best
    raw = centroids * scales + means
    sizes = tuple(int((labels == i).sum()) for i in range(len(raw)))
    rounded = tuple(tuple(round(float(v), 4) for v in row) for row in raw)
    mean_t, scale_t = tuple(round(float(v), 6) for v in means), tuple(round(float(v), 6) for v in scales)
    digest = hashlib.sha256(json.dumps([rounded, mean_t, scale_t]).encode()).hexdigest()[:10]
    return ClusterModel(rounded, mean_t, scale_t, sizes, len(data), f"kmeans{len(raw)}-{digest}")


def _refit(scaled: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-means from the previous centroids, unless fresh starts find a clearly better partition
    (less inertia by :data:`BETTER`): then that one, its clusters matched to the previous ids by
    least total centroid movement (the Hungarian method), so ids follow the behaviour they named."""
    warm, warm_labels = _lloyd(scaled, previous)
    fresh, fresh_labels = _best_of(scaled, len(previous))
    if _inertia(scaled, fresh, fresh_labels) >= (1 - BETTER) * _inertia(scaled, warm, warm_labels):
        return warm, warm_labels
    old_ids, new_ids = linear_sum_assignment(cdist(previous, fresh))
    order = new_ids[np.argsort(old_ids)]  # order[i]: the fresh cluster that takes id i
    renamed = np.empty_like(order)
    renamed[order] = np.arange(len(order))
    return fresh[order], renamed[fresh_labels]


def _inertia(scaled: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    return float(((scaled - centroids[labels]) ** 2).sum())


def _best_of(scaled: np.ndarray, k: int, starts: int = INITS) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from ``starts`` seeded k-means++ starts: the one of least inertia."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for seed in range(starts):
        seeded, _ = kmeans2(scaled, k, minit="++", seed=np.random.default_rng(seed), iter=1)
        centroids, labels = _lloyd(scaled, seeded)
        inertia = _inertia(scaled, centroids, labels)
        if best is None or inertia < best[0] - 1e-9:
            best = (inertia, centroids, labels)
    assert best is not None
    return best[1], best[2]


def _lloyd(data: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's iterations from ``start``; a cluster left without points keeps its centroid."""
    centroids = np.array(start, dtype=float)
    labels = vq(data, centroids)[0]
    for _ in range(100):
        for i in range(len(centroids)):
            members = data[labels == i]
            if len(members):
                centroids[i] = members.mean(axis=0)
        moved = vq(data, centroids)[0]
        if (moved == labels).all():
            break
        labels = moved
    return centroids, labels


def _silhouette(scaled: np.ndarray, labelling: np.ndarray) -> float:
    """The mean silhouette of a labelling (over at most 2,000 points: fits stay under a second)."""
    step = -(-len(scaled) // 2000)  # evenly spaced: the points are sorted, so the first 2,000 would be skewed
    data, labels = scaled[::step], labelling[::step]
    present = np.unique(labels)
    if len(present) < 2:
        return -1.0
    distances = cdist(data, data)
    mean_to = np.stack([distances[:, labels == c].mean(axis=1) for c in present], axis=1)
    own = np.searchsorted(present, labels)
    counts = np.array([(labels == c).sum() for c in present])
    a = mean_to[np.arange(len(data)), own] * counts[own] / np.maximum(counts[own] - 1, 1)
    mean_to[np.arange(len(data)), own] = np.inf
    b = mean_to.min(axis=1)
    scores = (b - a) / np.maximum(a, b)
    scores[counts[own] == 1] = 0.0  # a point alone in its cluster scores 0, as usual
    return float(np.mean(scores))
