"""The churn trainer (one worker: ``pulse.churn-labels`` has one partition), every
worker's model reader, and the population drift monitors (segment mix, daily activity; see ``stream/model.py`` for the
model, metrics and drift detectors).

The trainer restores the latest snapshot from the compacted ``pulse.churn-model`` topic when
it is assigned the labels partition, learns each label once (by offset and label id),
sends drift records to ``pulse.monitoring``, and publishes a new snapshot after every
``SNAPSHOT_EVERY`` labels and, when idle, every ``SNAPSHOT_IDLE_SECONDS``. Every worker
follows the topic and scores with the newest published parameters once they are ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.context import Pulse
from agents.follow import follow
from agents.publish import set_json
from schemas import ChurnLabel
from stream.core.work import Effects
from stream.io.connect import KafkaAccess
from stream.model import Frozen, ModelParams, Monitoring, SnapshotError, Trainer, served_record
from stream.sinks.redis import CHURN_MODEL_KEY

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 1000  # a snapshot (the learner's sample with it) costs ~0.1 s of the loop
SNAPSHOT_IDLE_SECONDS = 5.0
MODEL_KEY = b"churn-model"


async def latest_snapshot(kafka: KafkaAccess, topic: str) -> dict[str, Any] | None:
    """The newest record of the snapshot topic (one key, compacted: the last one is kept)."""
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return None
        consumer.seek(tp, end - 1)
        record = await consumer.getone()
        return json.loads(record.value)  # type: ignore[no-any-return]
    finally:
        await consumer.stop()


async def watch_population(pulse: Pulse, effects: Effects, partition: int) -> list[Awaitable[Any]]:
    """Feed a batch's segment changes and event-time activity to this worker's drift monitors
    (its partitions are a sample of the whole); drift records go to the monitoring topic.
    Returns their sends."""
    records: list[Monitoring] = []
    try:
        records += pulse.segment_mix.observe_changes(effects.tag_changes)
        for day, counts in effects.activity.items():
            pulse.activity.observe(day, counts)
        if effects.newest_event_time is not None:
            records += pulse.activity.advance(effects.newest_event_time, partition)
    except Exception:  # noqa: BLE001 - monitoring must never stop the worker
        log.exception("monitor: population drift failed")
    sends = []
    for record in records:
        log.warning("monitor: population drift (%s)", record.details)
        pulse.metrics.drift_records.labels(record.kind).inc()
        sends.append(await pulse.topic("monitoring").send(key=record.kind.encode(),
                                                 value=json.dumps(record.to_json()).encode(), partition=0))
    return sends


def encoded(frozen: Frozen) -> tuple[dict[str, Any], bytes]:
    """A snapshot's record, and as published."""
    record = frozen.record()
    return record, json.dumps(record).encode()


def register(pulse: Pulse) -> None:
    app = pulse.app
    settings = pulse.settings
    topic = settings.topic("churn-model")
    held: dict[str, Any] = {"trainer": None, "unsaved": 0}

    def new_trainer() -> Trainer:
        return Trainer(min_labels=settings.model_min_labels, heuristic_threshold=settings.churn_threshold,
                       horizon_days=settings.churn_horizon_days)

    async def restore() -> Trainer:
        record = await latest_snapshot(settings.kafka, topic)
        if record is None:
            log.info("trainer: no snapshot yet, starting a new model")
            return new_trainer()
        try:
            trainer = Trainer.restore(record)
        except SnapshotError as exc:
            log.warning("trainer: not restoring the latest snapshot (%s); starting a new model", exc)
            return new_trainer()
        log.info("trainer: restored model v%d (%d labels, %s)", trainer.version, trainer.labels_seen,
                 trainer.metrics())
        return trainer

    saving = asyncio.Lock()  # one snapshot at a time, published in version order

    async def save(trainer: Trainer) -> None:
        async with saving:
            taken = held["unsaved"]
            frozen = trainer.freeze()  # in the loop: what it reads of the trainer (a few ms)
            # The alert threshold, compression and encoding took 25-40 ms of the event loop
            # under load: in a thread, so that batches go on meanwhile (numpy and zlib release
            # the GIL while they work).
            record, value = await asyncio.to_thread(encoded, frozen)
            if held["trainer"] is not trainer:  # revoked meanwhile: the labels' new owner publishes now
                return
            params = ModelParams.from_json(record["params"])  # (computing them again costs tens of ms of the loop)
            await pulse.topic("churn-model").send(key=MODEL_KEY, value=value, partition=0)
            await pulse.topic("monitoring").send(key=b"model_quality", value=json.dumps({
                "kind": "model_quality", "model_version": params.model_version, "ready": params.ready,
                "labels_seen": params.labels_seen, **params.metrics}).encode(), partition=0)
            held["unsaved"] = max(0, held["unsaved"] - taken)  # labels learnt meanwhile wait for the next one

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the handler more narrowly than it calls it
    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        held["trainer"] = None  # another worker may train next: restore from the topic then
        pulse.activity.forget_partitions()  # the partitions held next report their own event times

    @app.agent(pulse.topic("churn-labels"), name="trainer", concurrency=1)
    async def train(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            # A trainer failure must never stop the worker: scoring goes on with the last
            # published model (or the heuristic), and the failure is logged and monitored.
            try:
                if held["trainer"] is None:
                    held["trainer"] = await restore()
                trainer: Trainer = held["trainer"]
                label = ChurnLabel.model_validate_json(event.value)
                for record in trainer.learn(label, offset=event.message.offset):
                    log.warning("trainer: %s at %s", record.kind, record.at.isoformat())
                    pulse.metrics.drift_records.labels(record.kind).inc()
                    await pulse.topic("monitoring").send(key=record.kind.encode(),
                                                value=json.dumps(record.to_json()).encode(), partition=0)
                held["unsaved"] += 1
                if held["unsaved"] >= SNAPSHOT_EVERY:
                    await save(trainer)
            except Exception as exc:  # noqa: BLE001 - see above
                log.exception("trainer: label at offset %s failed", event.message.offset)
                await pulse.topic("monitoring").send(key=b"trainer_error", value=json.dumps({
                    "kind": "trainer_error", "offset": event.message.offset,
                    "error": f"{type(exc).__name__}: {exc}"[:2000]}).encode(), partition=0)

    @app.timer(interval=SNAPSHOT_IDLE_SECONDS)
    async def save_when_idle() -> None:
        if held["trainer"] is not None and held["unsaved"]:
            try:
                await save(held["trainer"])
            except Exception:  # noqa: BLE001 - a failed snapshot is retried at the next tick
                log.exception("trainer: snapshot failed")

    @app.task
    async def follow_model() -> None:
        # Every worker scores with the newest published parameters.
        def on_snapshot(record: Any) -> None:
            pulse.model = ModelParams.from_json(json.loads(record.value)["params"])

        await follow(settings.kafka, topic, on_snapshot, start="last", what="model reader")

    published: dict[str, Any] = {"record": None}

    @app.timer(interval=SNAPSHOT_IDLE_SECONDS)
    async def publish_scorer() -> None:
        # readers (export, lookups) score as of now with what the workers score with now
        model = pulse.model if settings.churn_model == "auto" and pulse.model is not None and pulse.model.ready \
            else None
        record = served_record(model, settings.churn_config())
        if record != published["record"] and await set_json(settings, CHURN_MODEL_KEY, record, "churn scorer"):
            published["record"] = record
