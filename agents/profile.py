"""The profile agent: takes batches of ``events`` and ``customer-events`` records (raw events;
forwarded events, sweep ticks, resync requests), hands each partition's records to
:class:`stream.core.processor.Processor`, and sends the tag changes, alerts, labels, dead letters
and forwarded events to Kafka, and the batch's Redis writes (profiles, tag changes, alerts)
to the Redis outbox (``stream/sinks/outbox.py``). The order makes a crash at any point lose
nothing:

1. the batch is processed without writing the tables (:meth:`Processor.prepare`);
2. its outputs are sent and acknowledged by the broker;
3. only then are its table writes stored (state, sweep index, counters; their changelog
   records) and acknowledged (``agents/batching.py``);
4. only then is the batch acknowledged, so its offsets can be committed.

A worker that stops before 3 has stored nothing of the batch: its events come again, are
not duplicates, and raise their tag changes and alerts again (at least once; an alert
repeats its ``alert_id`` unless a time-driven change falls differently on the redo). One
that stops after 3 has already sent every output. The Redis sink (``agents/sink.py``)
applies the outbox and commits only what Redis has."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.batching import (
    behind,
    by_partition,
    caught_up_with,
    durable,
    exit_worker,
    gather_sends,
    held,
    make_current,
    take_batches,
    unacknowledged,
)
from agents.changelog import BatchedTable, ChangelogBatch
from agents.context import Pulse
from agents.record_batches import kafka_producer, send_batched
from agents.trainer import watch_population
from schemas import CustomerState, Profile
from stream.core.owner import owner_partition
from stream.core.processor import Prepared, Processor
from stream.core.work import Effects, Record, Tables
from stream.model import ModelParams
from stream.sinks.outputs import batch_outputs

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
# A batch closes at BATCH_SIZE records, as soon as it holds the newest record fetched of a
# partition (agents/batching.take_batches), or after this long. Under a backlog the window
# decides: records pass Faust's stream at ~100 us each, so ~500 records in 50 ms. A shorter
# window made the churn learner's label order, and the CDNOW test's served AUC, vary between
# runs (docs/performance.md, "Latency").
BATCH_WITHIN_SECONDS = 0.05
# the processor's tables (stream.core.work.Tables fields) and the Faust tables behind them
TABLES = (("state", "customer-state"), ("counters", "profile-counters"), ("maxima", "event-time-maxima"),
          ("index", "sweep-index"), ("erasures", "erasures"), ("identities", "identities"))


def build_processor(pulse: Pulse) -> Processor:
    settings = pulse.settings
    model_in_use = settings.churn_model == "auto"  # shadow: the model learns, the heuristic scores

    def scorer() -> ModelParams | None:
        return pulse.model if model_in_use else None

    def owns(customer_id: str, partition: int) -> bool:
        return owner_partition(customer_id, settings.partitions) == partition

    return Processor(rules=pulse.rules, policy=settings.dedup_policy(), churn=settings.churn_config(),
                     scorer=scorer, owns=owns, rescore_seconds=settings.rescore_seconds,
                     backlog_rescore_seconds=settings.backlog_rescore_seconds,
                     raw_topic=settings.topic("events"), validation=settings.validation_rules(),
                     population=pulse.population if pulse.rules.scoring.mode == "population" else None,
                     pseudonymize=settings.stored_id if settings.pseudonym_key else None,
                     link_limit=settings.identity_link_limit)


def output_records(pulse: Pulse, effects: Effects, partition: int, profile: Callable[[CustomerState], Profile],
                   input_ms: int | None = None) -> list[tuple[str, int | None, bytes | None, bytes]]:
    """Every output record of one partition's batch (``stream/sinks/outputs.py``) as
    ``(topic, partition, key, value)``. The agent sends a whole batch's records together
    (``agents/record_batches.py``): straight to the producer, one record batch per topic
    partition (Faust's ``Topic.send`` costs several times more per record, and these topics are
    declared at start-up), and once per batch, not once per input partition: a second record
    batch for a topic partition waits until the producer has sent the first."""
    topic = pulse.settings.topic
    for alert in effects.alerts:
        pulse.metrics.alerts.labels(alert.kind).inc()
    return [(topic(output.topic), output.partition, output.key, output.value)
            for output in batch_outputs(effects, profile, partition, pulse.settings.partitions, input_ms)]


def register(pulse: Pulse) -> None:
    processor = build_processor(pulse)

    # concurrency=1: faust may commit past an in-flight message with more (faust #606).
    @pulse.app.agent(pulse.inputs, name="profile", concurrency=1)
    async def profile(stream):  # type: ignore[no-untyped-def]
        caught_up = caught_up_with(pulse.app.consumer)
        unacknowledged(pulse.app.producer.buffer)  # durable() waits on these from the first batch on
        # the tables' changelog records go out in batches (agents/changelog.py), on Faust's producer
        producer = kafka_producer(pulse.app)
        changelog = ChangelogBatch(producer)
        tables = Tables(**{name: BatchedTable(pulse.table(table), changelog) for name, table in TABLES})
        async for events in take_batches(stream, BATCH_SIZE, BATCH_WITHIN_SECONDS, caught_up):
            started = time.perf_counter()
            try:
                with held(events):
                    sends: list[Awaitable[Any]] = []
                    outputs: list[tuple[str, int | None, bytes | None, bytes]] = []
                    prepared: list[tuple[Any, Prepared]] = []
                    for partition, group in by_partition(events):
                        records = [Record(e.message.partition, e.key, e.value, e.message.topic, e.message.offset)
                                   for e in group]
                        # behind: the batch stops short of the newest record fetched of the partition
                        batch = processor.prepare(records, tables, (partition,) if behind(group, caught_up) else ())
                        prepared.append((group[-1], batch))
                        effects = batch.effects
                        if effects.newest_event_time is not None:  # it is receiving: its sweeps follow its own time
                            pulse.sweep_clock.saw_events(partition, time.monotonic())
                        input_ms = int(min(e.message.timestamp for e in group) * 1000)
                        outputs += output_records(pulse, effects, partition, processor.profile, input_ms)
                        sends += await watch_population(pulse, effects, partition)
                    sends += await send_batched(producer, outputs)
                    await gather_sends(sends)  # the outputs are durable before the state that made them
                    for last_event, batch in prepared:
                        make_current(last_event)
                        batch.store()
                    await changelog.flush()
                    await durable(pulse.app)  # (other writes through Faust's own table path, if any)
            except Exception as exc:  # noqa: BLE001 - not skipped: the worker stops (agents/batching.py)
                exit_worker("profile", exc)
            pulse.metrics.batch_seconds.observe(time.perf_counter() - started)
            pulse.metrics.batch_records.observe(len(events))
