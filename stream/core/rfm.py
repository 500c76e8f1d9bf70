"""RFM scores 1-5 by a customer's standing in the whole scored population.

score = 1 + min(4, floor(5 x share of scored customers with a strictly worse value)); a
customer is worse on recency when their last purchase is earlier (more days since it),
on frequency with fewer orders, on monetary with less spent. Ties share a score.

The population is kept incrementally as histograms (remove the old value, add the new one
when a customer changes), fine enough to match an exact batch computation for nearly all
customers: recency by purchase day and frequency by order count are exact; monetary uses
buckets 0.5% wide. Histograms of several partitions merge by adding counts.

A score depends on a value only through four *cut points* per dimension (``Cuts``): the
score is 1 + how many cuts the value's key reaches. When the population changes, only the
customers whose keys lie between an old and a new cut change score, so a worker rescores
exactly those (``PartitionIndex.members_between``), never all its customers.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Dimension = Literal["days", "orders", "monetary"]
DIMENSIONS: tuple[Dimension, ...] = ("days", "orders", "monetary")

MONETARY_RESOLUTION = 1.005  # bucket width ratio


@dataclass(frozen=True)
class RawRfmValues:
    """The raw values scored: last purchase day (days since 1970-01-01), orders, cents spent;
    and the first purchase day, which the purchase model's summaries need (not scored)."""

    last_purchase_day: int
    orders: int
    monetary_cents: int
    first_purchase_day: int | None = None
    purchase_days: int | None = None  # distinct days with a purchase (None: count the orders)


@dataclass(frozen=True)
class RfmScore:
    r: int
    f: int
    m: int

    def __str__(self) -> str:
        return f"{self.r}{self.f}{self.m}"


def monetary_bucket(cents: int) -> int:
    """Log-spaced bucket of an amount; amounts of zero or less share bucket 0.

    >>> monetary_bucket(0), monetary_bucket(100) < monetary_bucket(101), monetary_bucket(-5)
    (0, True, 0)
    """
    if cents <= 0:
        return 0
    return 1 + int(math.log(cents) / math.log(MONETARY_RESOLUTION))


def score_from_share(worse: int, total: int) -> int:
    """The score of a customer with ``worse`` of ``total`` scored customers strictly worse.

    >>> [score_from_share(w, 10) for w in (0, 1, 2, 5, 8, 9)]
    [1, 1, 2, 3, 5, 5]
    """
    if total <= 0:
        return 1
    return 1 + min(4, (5 * worse) // total)


@dataclass
class Population:
    """Histograms of the scored customers (one per partition; merge with ``merge``)."""

    days: dict[int, int] = field(default_factory=dict)
    orders: dict[int, int] = field(default_factory=dict)
    monetary: dict[int, int] = field(default_factory=dict)
    size: int = 0
    # the purchase model's inputs: (purchase days, first day, last day) and (orders, bucket of the mean order)
    purchases: dict[tuple[int, ...], int] = field(default_factory=dict)
    spend: dict[tuple[int, ...], int] = field(default_factory=dict)
    # cross-sell affinity (stream/core/affinity.py): purchases with each category, and of those followed by B
    category_orders: dict[str, int] = field(default_factory=dict)
    follows: dict[tuple[str, str], int] = field(default_factory=dict)
    # behavioural clusters (stream/core/clusters.py): a bottom-k sample of customers' behaviour vectors,
    # keyed by a one-way digest of the id
    behaviour: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def add(self, values: RawRfmValues, sign: int = 1) -> None:
        keyed: list[tuple[dict[Any, int], Any]] = [
            (self.days, values.last_purchase_day), (self.orders, values.orders),
            (self.monetary, monetary_bucket(values.monetary_cents))]
        if values.first_purchase_day is not None:
            days = values.purchase_days or values.orders
            keyed += [(self.purchases, (days, values.first_purchase_day, values.last_purchase_day)),
                      (self.spend, (values.orders, monetary_bucket(values.monetary_cents // max(1, values.orders))))]
        for histogram, key in keyed:
            count = histogram.get(key, 0) + sign
            if count < 0:
                raise ValueError(f"removing a value that was never added: {values}")
            if count:
                histogram[key] = count
            else:
                histogram.pop(key, None)
        self.size += sign

    def add_affinity(self, orders: Mapping[str, int], follows: Mapping[tuple[str, str], int]) -> None:
        """Purchase and follow counts of cross-sell affinity (``stream/core/affinity.py``): kept in
        the partition's counters, not derived from its customers' states."""
        for category, n in orders.items():
            self.category_orders[category] = self.category_orders.get(category, 0) + n
        for pair, n in follows.items():
            self.follows[pair] = self.follows.get(pair, 0) + n

    def remove(self, values: RawRfmValues) -> None:
        self.add(values, sign=-1)

    def replace(self, old: RawRfmValues | None, new: RawRfmValues | None) -> None:
        """A customer changed: take the old value out and put the new one in."""
        if old is not None:
            self.remove(old)
        if new is not None:
            self.add(new)

    @classmethod
    def merge(cls, parts: Iterable[Population]) -> Population:
        merged = cls()
        for part in parts:
            pairs: tuple[tuple[dict[Any, int], dict[Any, int]], ...] = (
                (merged.days, part.days), (merged.orders, part.orders), (merged.monetary, part.monetary),
                (merged.purchases, part.purchases), (merged.spend, part.spend),
                (merged.category_orders, part.category_orders), (merged.follows, part.follows))
            for mine, theirs in pairs:
                for key, count in theirs.items():
                    mine[key] = mine.get(key, 0) + count
            merged.size += part.size
            merged.behaviour.update(part.behaviour)
        return merged

    def to_json(self) -> dict[str, object]:
        return {"days": _pairs(self.days), "orders": _pairs(self.orders),
                "monetary": _pairs(self.monetary), "size": self.size,
                "purchases": [[*k, v] for k, v in sorted(self.purchases.items())],
                "spend": [[*k, v] for k, v in sorted(self.spend.items())],
                "category_orders": dict(sorted(self.category_orders.items())),
                "follows": [[*k, v] for k, v in sorted(self.follows.items())],
                "behaviour": {k: list(v) for k, v in sorted(self.behaviour.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Population:
        """(Shares published before the purchase model have no ``purchases`` or ``spend``, and
        before cross-sell affinity no ``category_orders`` or ``follows``, before clusters no
        ``behaviour``.)"""
        orders: Any = data.get("category_orders", {})
        behaviour: Any = data.get("behaviour", {})
        follows: Any = data.get("follows", ())
        return cls(days=_unpairs(data["days"]), orders=_unpairs(data["orders"]),
                   monetary=_unpairs(data["monetary"]), size=int(data["size"]),  # type: ignore[call-overload]
                   purchases=_untuples(data.get("purchases", ())), spend=_untuples(data.get("spend", ())),
                   category_orders={str(k): int(v) for k, v in orders.items()},
                   follows={(str(a), str(b)): int(n) for a, b, n in follows},
                   behaviour={str(k): tuple(float(x) for x in v) for k, v in behaviour.items()})

    def histogram(self, dimension: Dimension) -> dict[int, int]:
        return {"days": self.days, "orders": self.orders, "monetary": self.monetary}[dimension]

    def cuts(self) -> Cuts:
        """The four cut points of each dimension over this population."""
        return Cuts(**{d: cut_points(self.histogram(d), self.size) for d in DIMENSIONS})


def keys_of(values: RawRfmValues) -> dict[Dimension, int]:
    """The histogram key of each dimension."""
    return {"days": values.last_purchase_day, "orders": values.orders,
            "monetary": monetary_bucket(values.monetary_cents)}


def cut_points(histogram: Mapping[int, int], total: int) -> tuple[int, ...]:
    """``cut[k-1]`` = the smallest key whose customers all score above k: the key after the
    first key at which 5 x (customers at or below it) reaches k x total.

    >>> cut_points({1: 6, 2: 2, 5: 2}, 10)  # 6 customers at or below key 1, 8 at or below key 2
    (2, 2, 2, 3)
    >>> cut_points({}, 0)
    ()
    """
    if total <= 0:
        return ()
    cuts, running, keys = [], 0, sorted(histogram)
    k = 1
    for key in keys:
        running += histogram[key]
        while k <= 4 and 5 * running >= k * total:
            cuts.append(key + 1)
            k += 1
    return tuple(cuts)


@dataclass(frozen=True)
class Cuts:
    """Cut points per dimension; ``()`` for an empty population (everyone scores 1)."""

    days: tuple[int, ...] = ()
    orders: tuple[int, ...] = ()
    monetary: tuple[int, ...] = ()

    def score(self, values: RawRfmValues) -> RfmScore:
        keys = keys_of(values)
        r, f, m = (1 + sum(1 for cut in getattr(self, d) if keys[d] >= cut) for d in DIMENSIONS)
        return RfmScore(r=r, f=f, m=m)

    def moved(self, other: Cuts) -> dict[Dimension, list[tuple[int, int]]]:
        """Per dimension, the key ranges ``[low, high)`` whose scores differ between the two.

        >>> Cuts(orders=(2, 2, 3, 5)).moved(Cuts(orders=(2, 3, 3, 5)))
        {'orders': [(2, 3)]}
        """
        ranges: dict[Dimension, list[tuple[int, int]]] = {}
        for d in DIMENSIONS:
            mine, theirs = getattr(self, d), getattr(other, d)
            if mine == theirs:
                continue
            if not mine or not theirs:  # from or to an empty population: every key may move
                ranges[d] = [(-(2**62), 2**62)]
                continue
            moved = [(min(a, b), max(a, b)) for a, b in zip(mine, theirs, strict=True) if a != b]
            ranges[d] = moved
        return ranges

    def to_json(self) -> dict[str, list[int]]:
        return {d: list(getattr(self, d)) for d in DIMENSIONS}

    @classmethod
    def from_json(cls, data: Mapping[str, list[int]]) -> Cuts:
        return cls(**{d: tuple(int(k) for k in data.get(d, ())) for d in DIMENSIONS})


class PartitionIndex:
    """One partition's share of the population, and its customers by histogram key, so the
    customers between two cut points can be listed without a scan."""

    def __init__(self) -> None:
        self.population = Population()
        self.members: dict[Dimension, dict[int, set[str]]] = {d: {} for d in DIMENSIONS}

    def replace(self, customer_id: str, old: RawRfmValues | None, new: RawRfmValues | None) -> None:
        if old == new:
            return
        self.population.replace(old, new)
        if old is not None:
            for d, key in keys_of(old).items():
                bucket = self.members[d][key]
                bucket.discard(customer_id)
                if not bucket:
                    del self.members[d][key]
        if new is not None:
            for d, key in keys_of(new).items():
                self.members[d].setdefault(key, set()).add(customer_id)

    def members_between(self, ranges: Mapping[Dimension, list[tuple[int, int]]]) -> set[str]:
        """Customers with a key in any ``[low, high)`` range of its dimension.

        >>> index = PartitionIndex()
        >>> index.replace("a", None, RawRfmValues(10, 1, 100)); index.replace("b", None, RawRfmValues(12, 3, 900))
        >>> sorted(index.members_between({"orders": [(2, 4)]})), sorted(index.members_between({"days": [(0, 11)]}))
        (['b'], ['a'])
        """
        found: set[str] = set()
        for d, spans in ranges.items():
            for key, customers in self.members[d].items():
                if any(low <= key < high for low, high in spans):
                    found |= customers
        return found


def _pairs(histogram: dict[int, int]) -> list[list[int]]:
    return [[k, v] for k, v in sorted(histogram.items())]


def _unpairs(pairs: object) -> dict[int, int]:
    return {int(k): int(v) for k, v in pairs}  # type: ignore[attr-defined]


def _untuples(rows: object) -> dict[tuple[int, ...], int]:
    return {tuple(int(v) for v in row[:-1]): int(row[-1]) for row in rows}  # type: ignore[attr-defined]


def exact_scores(population: Mapping[str, RawRfmValues]) -> dict[str, RfmScore]:
    """The batch reference: scores by exact comparison over all customers (O(n log n)).

    >>> pop = {"a": RawRfmValues(10, 1, 100), "b": RawRfmValues(20, 3, 500), "c": RawRfmValues(20, 2, 50)}
    >>> {k: str(v) for k, v in sorted(exact_scores(pop).items())}
    {'a': '112', 'b': '244', 'c': '221'}
    """
    values = list(population.values())
    n = len(values)
    days = sorted(v.last_purchase_day for v in values)
    orders = sorted(v.orders for v in values)
    money = sorted(v.monetary_cents for v in values)
    return {
        cid: RfmScore(
            r=score_from_share(bisect_left(days, v.last_purchase_day), n),
            f=score_from_share(bisect_left(orders, v.orders), n),
            m=score_from_share(bisect_left(money, v.monetary_cents), n),
        )
        for cid, v in population.items()
    }
