"""The app's topology, declared once: every topic and table with its partitions, compaction,
key and value. ``agents/app.py`` declares the Faust topics and tables from it,
``stream/infra/topics.py`` creates the missing topics from it before a worker subscribes, and the
topic table in docs/contracts.md describes the same entries.

Adding a per-customer output topic is one :class:`TopicSpec` here; the agent that writes it
sends to ``settings.topic(name)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stream.settings import Settings

# Compacted topics keep a key's older values until the log cleaner runs, so an erased
# customer's values could stay on disk indefinitely. KIP-354: the cleaner compacts a record at
# most max.compaction.lag.ms after it was written (rolling the active segment if need be);
# the tombstone, which still names the key, goes delete.retention.ms after that.
MAX_COMPACTION_LAG_MS = 24 * 3_600_000
DELETE_RETENTION_MS = 24 * 3_600_000
COMPACTED = {"cleanup.policy": "compact", "max.compaction.lag.ms": str(MAX_COMPACTION_LAG_MS),
             "delete.retention.ms": str(DELETE_RETENTION_MS)}


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the app; ``name`` is without the prefix (``PULSE_TOPIC_PREFIX``)."""

    name: str
    key: str
    value: str
    partitions: Literal["all", 1] = "all"  # "all": PULSE_PARTITIONS, co-partitioned with the tables
    compacted: bool = False
    internal: bool = False  # written and read only by the workers

    def partition_count(self, settings: Settings) -> int:
        return settings.partitions if self.partitions == "all" else self.partitions

    @property
    def config(self) -> dict[str, str]:
        return dict(COMPACTED) if self.compacted else {}


@dataclass(frozen=True)
class TableSpec:
    """One Faust table: string keys, bytes values, RocksDB and a compacted changelog, one
    partition per input partition."""

    name: str
    key: str
    value: str


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("events", "any (customer id recommended)", "a JSON event (schemas/events.py)"),
    TopicSpec("events.dlq", "the original key", "DeadLetter JSON (schemas/deadletter.py)"),
    TopicSpec("customer-events", "customer or anonymous id",
              "forwarded events, sweep ticks, resync, erasure, identity merge and unlink requests", internal=True),
    TopicSpec("redis-outbox", "none (the batch's partition)", "a batch's Redis writes (stream/sinks/outbox.py)",
              internal=True),
    TopicSpec("tag-changes", "customer id", "TagChange JSON"),
    TopicSpec("alerts", "customer id", "Alert JSON"),
    TopicSpec("alert-outcomes", "customer id", "AlertOutcome JSON: whether a purchase followed an alert"),
    # one partition: one trainer reads the labels in order
    TopicSpec("churn-labels", "customer id", "ChurnLabel JSON", partitions=1),
    TopicSpec("churn-model", "churn-model", "versioned model snapshots", partitions=1, compacted=True),
    TopicSpec("monitoring", "record kind", "model quality and drift records", partitions=1),
    # each partition's share of the RFM population; every worker reads all of it
    TopicSpec("rfm-population", "p{partition}", "a partition's population histograms", partitions=1,
              compacted=True),
    # erasure receipts (stream/sinks/erasure.py): what was cleared where, and when
    TopicSpec("privacy", "request id", "an erasure receipt (JSON)", partitions=1),
)

TABLES: tuple[TableSpec, ...] = (
    TableSpec("customer-state", "customer id", "CustomerState JSON (schemas/state.py)"),
    # counters written before validation moved into the profile agent (read, never written)
    TableSpec("ingest-counters", "counter@partition", "a count"),
    # *@partition: a JSON object of the partition's counts; counter@partition: a decimal count
    # written before 2026-12-04, still read (stream/core/counters.py)
    TableSpec("profile-counters", "*@partition (or counter@partition)", "JSON object of counts (or a count)"),
    # newest event time per customer-events partition (see stream/core/watermark.py)
    TableSpec("event-time-maxima", "p{partition}", "epoch seconds"),
    # customers by the hour of their next time-driven boundary (see stream/core/sweep.py)
    TableSpec("sweep-index", "bucket, cursor or cuts key", "members or a value"),
    # erased customers, whose later events are suppressed (see stream/core/erasure.py)
    TableSpec("erasures", "SHA-256 digest of the customer id", "erased_at and request id (JSON)"),
    # anonymous ids: their own activity and links (see stream/core/identity.py)
    TableSpec("identities", "anonymous id", "Identity JSON (schemas/state.py)"),
)


@dataclass(frozen=True)
class KafkaTopic:
    """A topic as created on the broker."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def required_topics(settings: Settings) -> list[KafkaTopic]:
    """Every topic a worker reads or writes, the tables' changelogs included.

    >>> [t.name for t in required_topics(Settings())][:2]
    ['pulse.events', 'pulse.events.dlq']
    >>> len(required_topics(Settings())) == len(TOPICS) + len(TABLES)
    True
    """
    topics = [KafkaTopic(settings.topic(spec.name), spec.partition_count(settings), spec.config)
              for spec in TOPICS]
    # changelogs: compacted only, never time/size retention (faust #176, #597, #651)
    topics += [KafkaTopic(changelog_topic(settings, spec.name), settings.partitions, dict(COMPACTED))
               for spec in TABLES]
    return topics


def redis_sink_group(app_id: str) -> str:
    """The consumer group of the Redis sink (it applies the Redis outbox outside Faust's group).

    >>> redis_sink_group("pulse")
    'pulse-redis-sink'
    """
    return f"{app_id}-redis-sink"


def processing_groups(settings: Settings, inputs: tuple[str, ...] = ("events", "customer-events", "churn-labels")
                      ) -> dict[str, list[str]]:
    """The consumer groups of the workers and the topics each must have consumed, for "processed
    and in Redis" (``stream.io.replay.wait_until_processed``): the events, and the delayed
    labels they resolved (the churn model that scores them has learnt from them).

    >>> processing_groups(Settings())["customer-pulse"]
    ['pulse.events', 'pulse.customer-events', 'pulse.churn-labels']
    >>> processing_groups(Settings())["customer-pulse-redis-sink"]
    ['pulse.redis-outbox']
    """
    return {settings.app_id: [settings.topic(name) for name in inputs],
            redis_sink_group(settings.app_id): [settings.topic("redis-outbox")]}
