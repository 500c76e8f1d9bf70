"""What one worker holds, typed: built once by ``agents.app.create_app`` from the topology
(``stream/topology.py``) and handed to every agent's ``register``. Nothing at module level."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import faust
from faust.types import TableT, TopicT

from stream.core.population import PopulationBook
from stream.core.rules import Rules
from stream.core.watermark import SweepClock
from stream.infra.metrics import WorkerMetrics
from stream.model import ModelParams, SegmentMixMonitor
from stream.model.activity_drift import ActivityMonitor
from stream.settings import Settings

T = TypeVar("T")


@dataclass
class Pulse:
    settings: Settings
    app: faust.App
    rules: Rules
    topics: Mapping[str, TopicT]  # by topology name, e.g. "customer-events"
    tables: Mapping[str, TableT[str, bytes]]  # by topology name, e.g. "customer-state"
    inputs: TopicT  # what the profile agent reads: events and customer-events
    population: PopulationBook
    segment_mix: SegmentMixMonitor = field(default_factory=SegmentMixMonitor)  # fed by the profile agent
    activity: ActivityMonitor = field(default_factory=ActivityMonitor)  # likewise (lateness set by create_app)
    model: ModelParams | None = None  # the newest published churn model (agents/trainer.py)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)  # /metrics (agents/views.py)
    sweep_clock: SweepClock = field(default_factory=SweepClock)  # fed by the profile agent, read by the sweeper

    def topic(self, name: str) -> TopicT:
        """A topic of the topology by its name without the prefix."""
        return _named(self.topics, "topic", name)

    def table(self, name: str) -> TableT[str, bytes]:
        """A table of the topology by its name."""
        return _named(self.tables, "table", name)


def _named(declared: Mapping[str, T], kind: str, name: str) -> T:
    try:
        return declared[name]
    except KeyError:
        raise KeyError(f"no {kind} {name!r} in stream/topology.py (known: {sorted(declared)})") from None
