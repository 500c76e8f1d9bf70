"""Population-relative RFM scoring across workers (``scoring.mode: population``): the book.

Each worker keeps, for each partition it owns, that partition's share of the scored
population (histograms) and its customers by histogram key (``stream.core.rfm.PartitionIndex``),
built from the ``customer-state`` table when the partition is first needed after an
assignment and then updated as customers change. ``agents/population_sync.py`` publishes each
changed share to the compacted ``pulse.rfm-population`` topic and reads every other worker's
shares from it, so all workers score against the merged population.

Every customer of a partition is scored against that partition's *applied* cut points
(kept in the ``sweep-index`` table as ``rfm-cuts@p{n}``). Inside the profile agent, at most
once per ``PULSE_RESCORE_SECONDS`` and on every sweep tick, the partition moves to the
merged population's cut points and rescores only the customers whose keys lie between an
old and a new cut; no customer outside those ranges can change score.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from schemas import CustomerState
from stream.core.affinity import Rule, from_counter
from stream.core.clusters import BottomK, ClusterModel, behaviour_vector
from stream.core.counters import by_partition
from stream.core.owner import owner_partition
from stream.core.purchase_outlook import PurchaseModel
from stream.core.rfm import Cuts, PartitionIndex, Population
from stream.core.tagging import raw_values

log = logging.getLogger(__name__)


def applied_key(partition: int) -> str:
    return f"rfm-cuts@p{partition}"


class PopulationBook:
    """This worker's partitions of the population, the others' as last published, and the
    cut points each owned partition's scores were computed with."""

    def __init__(self, partitions: int, states: Mapping[str, bytes], index: Mapping[str, bytes],
                 mode: str = "population", counters: Mapping[str, bytes] | None = None) -> None:
        self.partitions = partitions
        self.states = states  # the customer-state table
        self.counters: Mapping[str, bytes] = counters if counters is not None else {}  # profile-counters
        self.stored_cuts = index  # the sweep-index table, which keeps each partition's applied cuts
        self.mode = mode
        self.local: dict[int, PartitionIndex] = {}
        self.applied: dict[int, Cuts] = {}
        self.remote: dict[int, Population] = {}
        self.dirty: set[int] = set()
        self.last_rescore: dict[int, float] = {}
        self._merged: Cuts | None = None
        self.purchase: PurchaseModel | None = None  # fitted by agents/population_sync.py
        self.affinity: list[Rule] = []  # cross-sell rules of the merged population, by agents/population_sync.py
        self.clusters: ClusterModel | None = None  # behavioural clusters, fitted by agents/population_sync.py
        self.samples: dict[int, BottomK] = {}  # each owned partition's behaviour sample

    # -- owned partitions -------------------------------------------------------------
    def index(self, partition: int) -> PartitionIndex:
        """The partition's index, built (with every other owned partition not yet built) from
        the customer-state table on first use after an assignment."""
        if partition not in self.local:
            self._build(partition)
        return self.local[partition]

    def _build(self, wanted: int) -> None:
        fresh: dict[int, PartitionIndex] = {wanted: PartitionIndex()}
        samples: dict[int, BottomK] = {}
        started, customers = time.monotonic(), 0
        for customer_id, stored in list(self.states.items()):
            partition = owner_partition(customer_id, self.partitions)
            if partition in self.local:
                continue
            state = CustomerState.model_validate_json(stored)
            values = raw_values(state)
            share = fresh.setdefault(partition, PartitionIndex())
            if values is not None:
                share.replace(customer_id, None, values)
                customers += 1
            sample = samples.get(partition) or samples.setdefault(partition, BottomK(share.population.behaviour))
            if sample.wants(customer_id):
                sample.offer(customer_id, behaviour_vector(state))
        # cross-sell counts live in the counters, by partition
        for (name, at), count in by_partition(list(self.counters.items())).items():
            which = from_counter(name)
            if which is None or not at.isdigit() or int(at) in self.local:
                continue
            _, what = which
            counted = fresh.setdefault(int(at), PartitionIndex()).population
            if isinstance(what, tuple):
                counted.add_affinity({}, {what: count})
            else:
                counted.add_affinity({what: count}, {})
        for partition, index in fresh.items():
            self.local[partition] = index
            self.samples[partition] = samples.get(partition) or BottomK(index.population.behaviour)
            stored_cuts = self.stored_cuts.get(applied_key(partition))
            # Nothing applied yet (a new partition, or a switch from fixed scoring): the
            # empty cuts make the first rescore visit every customer of the partition once.
            self.applied[partition] = Cuts.from_json(json.loads(stored_cuts)) if stored_cuts else Cuts()
            self.dirty.add(partition)
        self._merged = None
        log.info("rfm population: built partitions %s from %d customers in %.1f s",
                 sorted(fresh), customers, time.monotonic() - started)

    def update(self, partition: int, customer_id: str, old: CustomerState, new: CustomerState) -> None:
        index = self.index(partition)
        before, after = raw_values(old), raw_values(new)
        if before != after:
            index.replace(customer_id, before, after)
            self.dirty.add(partition)
            self._merged = None
        sample = self.samples[partition]
        if sample.wants(customer_id) and sample.offer(customer_id, behaviour_vector(new)):
            self.dirty.add(partition)

    def add_affinity(self, partition: int, orders: Mapping[str, int], follows: Mapping[tuple[str, str], int]) -> None:
        """A purchase's cross-sell counts (also added to the partition's counters by the caller)."""
        self.index(partition).population.add_affinity(orders, follows)
        self.dirty.add(partition)

    def cuts_for(self, partition: int) -> Cuts:
        self.index(partition)
        return self.applied[partition]

    def set_applied(self, partition: int, cuts: Cuts, index: MutableMapping[str, bytes]) -> None:
        """Record the cuts a partition's scores now use, in ``index`` (the batch's view of the
        sweep-index table, so they are stored after the states rescored with them)."""
        self.applied[partition] = cuts
        index[applied_key(partition)] = json.dumps(cuts.to_json()).encode()
        self.last_rescore[partition] = time.monotonic()

    def due(self, partition: int, every: float) -> bool:
        return time.monotonic() - self.last_rescore.get(partition, 0.0) >= every

    def forget_all(self) -> None:
        """After a rebalance: rebuild from the tables (another worker may have moved them on)."""
        self.local.clear()
        self.samples.clear()
        self.applied.clear()
        self.dirty.clear()
        self._merged = None

    # -- the merged population ------------------------------------------------------
    def merged(self) -> Population:
        parts = list(p.population for p in self.local.values())
        parts += [pop for partition, pop in self.remote.items() if partition not in self.local]
        return Population.merge(parts)

    def merged_cuts(self) -> Cuts:
        if self._merged is None:
            self._merged = self.merged().cuts()
        return self._merged

    def on_remote(self, partition: int, population: Population) -> None:
        self.remote[partition] = population
        if partition not in self.local:
            self._merged = None

    def status(self) -> dict[str, Any]:
        merged = self.merged()
        cuts = merged.cuts()
        return {
            "mode": self.mode,
            "population": merged.size,
            "cuts": cuts.to_json(),
            "partitions": {str(p): {"customers": index.population.size,
                                    "applied": self.applied[p].to_json(),
                                    "settled": self.applied[p] == cuts}
                           for p, index in sorted(self.local.items())},
            "remote_partitions": sorted(p for p in self.remote if p not in self.local),
            "purchase_model": self.purchase.to_json() if self.purchase is not None else None,
            "behaviour_sample": len(merged.behaviour),
            "clusters": self.clusters.to_json() if self.clusters is not None else None,
        }
