"""Bootstrap: builds the Faust app, its topics, tables, agents and views from ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from agents.batching import quiet_producer_buffer_logs
from agents.population import PopulationBook
from stream.model import ModelParams, SegmentMixMonitor
from stream.settings import Settings
from stream.tags import Rules, load_rules


@dataclass
class Pulse:
    """Everything one worker holds; built once by :func:`create_app`, nothing at module level."""

    settings: Settings
    app: faust.App
    events: Any
    dead_letters: Any
    customer_events: Any
    inputs: Any
    redis_outbox: Any
    customer_state: Any
    ingest_counters: Any
    profile_counters: Any
    event_time_maxima: Any
    sweep_index: Any
    tag_changes: Any
    rfm_population: Any
    alerts: Any
    churn_labels: Any
    churn_model: Any
    monitoring: Any
    rules: Rules
    population: PopulationBook = field(init=False)
    segment_mix: SegmentMixMonitor = field(default_factory=SegmentMixMonitor)  # fed by the profile agent
    model: ModelParams | None = None  # the newest published churn model (agents/trainer.py)


def create_app(settings: Settings) -> Pulse:
    from agents import faust_patches

    faust_patches.apply()
    quiet_producer_buffer_logs()
    rules = load_rules(settings.rules_file)  # validated at start-up: RulesError names the problem
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hostport}" for hostport in settings.kafka_bootstrap.split(",")],
        store="rocksdb://",
        # One directory per worker on a machine (the web port tells them apart).
        datadir=str((settings.data_dir / f"worker-{settings.web_port}").resolve()),
        topic_partitions=settings.partitions,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_host="127.0.0.1",
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        # at-least-once on purpose: effects are idempotent (see shared/design.md)
        processing_guarantee="at_least_once",
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    pulse = Pulse(
        settings=settings,
        app=app,
        events=app.topic(settings.topic("events"), **raw),
        dead_letters=app.topic(settings.topic("events.dlq"), **raw),
        customer_events=app.topic(settings.topic("customer-events"), internal=True,
                                  partitions=settings.partitions, **raw),
        # what the profile agent reads: raw events (validated there; those keyed by another
        # customer's partition forwarded to customer-events) and customer-events
        inputs=app.topic(settings.topic("events"), settings.topic("customer-events"), **raw),
        # the Redis writes of each batch (stream/sinks/outbox.py), which the Redis sink applies
        redis_outbox=app.topic(settings.topic("redis-outbox"), internal=True, partitions=settings.partitions, **raw),
        customer_state=app.Table(
            # raw bytes (the app default): values are CustomerState JSON, decoded by pydantic
            "customer-state", key_type=str, value_type=bytes, partitions=settings.partitions,
        ),
        # counters written before validation moved into the profile agent (read, never written)
        ingest_counters=app.Table("ingest-counters", key_type=str, value_type=bytes,
                                  partitions=settings.partitions),
        profile_counters=app.Table("profile-counters", key_type=str, value_type=bytes,
                                   partitions=settings.partitions),
        # newest event time per customer-events partition (see stream/watermark.py)
        event_time_maxima=app.Table("event-time-maxima", key_type=str, value_type=bytes,
                                    partitions=settings.partitions),
        # customers by the hour of their next time-driven boundary (see agents/sweeper.py)
        sweep_index=app.Table("sweep-index", key_type=str, value_type=bytes, partitions=settings.partitions),
        tag_changes=app.topic(settings.topic("tag-changes"), partitions=settings.partitions, **raw),
        rfm_population=app.topic(settings.topic("rfm-population"), partitions=1,
                                 config={"cleanup.policy": "compact"}, **raw),
        alerts=app.topic(settings.topic("alerts"), partitions=settings.partitions, **raw),
        churn_labels=app.topic(settings.topic("churn-labels"), partitions=1, **raw),
        churn_model=app.topic(settings.topic("churn-model"), partitions=1, config={"cleanup.policy": "compact"},
                              **raw),
        monitoring=app.topic(settings.topic("monitoring"), partitions=1, **raw),
        rules=rules,
    )
    pulse.population = PopulationBook(pulse)
    from agents import population, profile, sink, sweeper, trainer, views

    if rules.scoring.mode == "population":
        population.register(pulse, pulse.population)
    profile.register(pulse)
    sweeper.register(pulse)
    sink.register(pulse)
    trainer.register(pulse)
    views.register(pulse)
    return pulse
