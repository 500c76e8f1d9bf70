"""Prometheus metrics of a worker (``/metrics`` on its web port) with prometheus-client.

Two kinds:
- measured in this process since it started: batch processing time and size, event->Redis
  latency, alerts by kind, Redis writes and retries, drift records by detector;
- read at scrape time: the processing counters of the partitions this worker holds (from
  their changelog-backed table, so they survive restarts: a partition that moves to another
  worker takes its counts along, which Prometheus sees as a counter reset here), the churn
  model's quality, and the consumer lag of every group of the app, per partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.core.counters import by_partition

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# table counter -> (metric, labels); "ingest.rejected.<reason>" is handled apart
_EVENT_COUNTERS = {
    "ingest.received": ("pulse_events_received", "Raw records read from the events topic."),
    "ingest.accepted": ("pulse_events_accepted", "Raw records that passed validation."),
    "profile.applied": ("pulse_events_applied", "Events folded into a customer's state."),
    "profile.duplicate": ("pulse_events_duplicate", "Redelivered events (same event id) counted once."),
    "profile.too_late": ("pulse_events_late", "Events older than the allowed lateness (dead-lettered)."),
    "alerts.raised": ("pulse_alerts_raised", "Alerts raised (all kinds)."),
    "sweeper.transitions": ("pulse_time_driven_changes", "Tag changes made due by time, not events."),
    "resync.published": ("pulse_resync_profiles", "Profiles re-published by pulse resync."),
}


class WorkerMetrics:
    """The metrics one worker exposes; a registry of its own (nothing global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batch_seconds = Histogram("pulse_batch_seconds", "Time to process one batch and have its outputs "
                                       "acknowledged.", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_records = Histogram("pulse_batch_records", "Records per batch.",
                                       buckets=(1, 10, 50, 100, 250, 500, 1000), registry=self.registry)
        self.event_to_redis = Histogram("pulse_event_to_redis_seconds", "From an input record's Kafka timestamp "
                                        "(the oldest of its batch) to Redis having its writes.",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.alerts = Counter("pulse_alerts", "Alerts raised by this worker, by kind.", ["kind"],
                              registry=self.registry)
        self.redis_writes = Counter("pulse_redis_writes", "Profiles, tag changes and alerts written to Redis.",
                                    registry=self.registry)
        self.redis_retries = Counter("pulse_redis_write_retries", "Redis writes that failed and were retried.",
                                     registry=self.registry)
        self.drift_records = Counter("pulse_drift_records", "Drift records sent to the monitoring topic.",
                                     ["detector"], registry=self.registry)
        self.loop_stalls = Histogram("pulse_event_loop_stall_seconds", "Times the worker's event loop was held "
                                     "for PULSE_LOOP_STALL_SECONDS or more, by how long.",
                                     buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=self.registry)
        self._sources: dict[str, Callable[[], Any]] = {}
        self.registry.register(_ScrapeTime(self._sources))

    def read_at_scrape(self, *, counters: Callable[[], Iterable[tuple[str, bytes]]],
                       model: Callable[[], Mapping[str, Any] | None],
                       lags: Callable[[], Mapping[tuple[str, str, int], int] | None]) -> None:
        """Where the scrape-time figures come from (the worker's tables, model and Kafka)."""
        self._sources.update(counters=counters, model=model, lags=lags)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _ScrapeTime(Collector):
    def __init__(self, sources: Mapping[str, Callable[[], Any]]) -> None:
        self._sources = sources

    def describe(self) -> list[Metric]:
        return []  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        if "counters" in self._sources:
            yield from counter_families(self._sources["counters"]())
        if "model" in self._sources:
            yield from model_families(self._sources["model"]())
        if "lags" in self._sources:
            lags = self._sources["lags"]()
            if lags is not None:
                family = GaugeMetricFamily("pulse_consumer_lag", "Records a consumer group has still to process.",
                                           labels=["group", "topic", "partition"])
                for (group, topic, partition), lag in sorted(lags.items()):
                    family.add_metric([group, topic, str(partition)], lag)
                yield family


def counter_families(items: Iterable[tuple[str, bytes]]) -> list[Metric]:
    """The processing counters of a worker's partitions as Prometheus counters, per partition
    (each event counter of a partition the table has counts of, 0 until it counts).

    >>> families = counter_families([("*@0", b'{"ingest.received":5,"ingest.rejected.bad_json":2}')])
    >>> [(s.name, s.labels["partition"], s.value) for f in families for s in f.samples if s.value]
    [('pulse_events_received_total', '0', 5), ('pulse_events_rejected_total', '0', 2)]
    """
    counted = by_partition(items)
    partitions = sorted({partition for _, partition in counted}, key=lambda p: (len(p), p))
    plain = []
    for name, (metric, help_text) in _EVENT_COUNTERS.items():
        family = CounterMetricFamily(metric, help_text, labels=["partition"])
        for partition in partitions:
            family.add_metric([partition], counted.get((name, partition), 0))
        plain.append(family)
    rejected = CounterMetricFamily("pulse_events_rejected", "Raw records rejected (dead-lettered), by reason.",
                                   labels=["partition", "reason"])
    for (name, partition), value in sorted(counted.items()):
        if name.startswith("ingest.rejected."):
            rejected.add_metric([partition, name.removeprefix("ingest.rejected.")], value)
    return [*(plain if partitions else []), *([rejected] if rejected.samples else [])]


def model_families(model: Mapping[str, Any] | None) -> list[Metric]:
    """The churn model's quality on recent delayed labels (absent before a model is published)."""
    if not model:
        return []
    families = []
    figures = {"roc_auc": "pulse_model_auc", "heuristic_roc_auc": "pulse_heuristic_auc"}
    for key, name in figures.items():
        if isinstance(model.get("metrics", {}).get(key), int | float):
            family = GaugeMetricFamily(name, f"Progressive ROC AUC ({key}) on delayed churn labels.")
            family.add_metric([], float(model["metrics"][key]))
            families.append(family)
    labels = GaugeMetricFamily("pulse_model_labels_seen", "Delayed churn labels the model has learned from.")
    labels.add_metric([], float(model.get("labels_seen", 0)))
    ready = GaugeMetricFamily("pulse_model_ready", "1 when the online model is ready to score.")
    ready.add_metric([], 1.0 if model.get("ready") else 0.0)
    return [*families, labels, ready]
