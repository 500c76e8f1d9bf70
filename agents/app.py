"""Bootstrap: builds the Faust app, its topics and tables (from ``stream/topology.py``), agents
and views from ``Settings``."""

from __future__ import annotations

from typing import Any

import faust

from agents import faust_patches, population_sync, profile, sink, sweeper, trainer, views
from agents.batching import quiet_producer_buffer_logs
from agents.context import Pulse
from agents.stall_watch import StallWatch
from agents.table_keys import use_table_keys
from stream.core.population import PopulationBook
from stream.core.rules import load_rules
from stream.model.activity_drift import ActivityMonitor
from stream.settings import Settings
from stream.topology import TABLES, TOPICS


def create_app(settings: Settings) -> Pulse:
    faust_patches.apply()
    quiet_producer_buffer_logs()
    rules = load_rules(settings.rules_file)  # validated at start-up: RulesError names the problem
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hostport}" for hostport in settings.kafka_bootstrap.split(",")],
        broker_credentials=settings.kafka.faust_credentials(),
        store="rocksdb://",
        # One directory per worker on a machine (the web port tells them apart).
        datadir=str((settings.data_dir / f"worker-{settings.web_port}").resolve()),
        topic_partitions=settings.partitions,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_host="127.0.0.1",  # the advertised host; web_bind is where it listens
        web_bind=str(settings.web_bind),
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        # at-least-once on purpose: every effect is idempotent (docs/operations.md, "Guarantees")
        processing_guarantee="at_least_once",
        # a killed worker's partitions move after this silence (Faust's default: 60 s)
        broker_session_timeout=settings.group_timing["session_timeout_ms"] / 1000,
        broker_heartbeat_interval=settings.group_timing["heartbeat_interval_ms"] / 1000,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw"}
    topics = {spec.name: app.topic(settings.topic(spec.name), partitions=spec.partition_count(settings),
                                   internal=spec.internal, config=spec.config or None, **raw)
              for spec in TOPICS}
    # values are raw bytes (the app default): CustomerState JSON and the like, decoded by the agents
    tables = {spec.name: app.Table(spec.name, key_type=str, value_type=bytes, partitions=settings.partitions,
                                   options=settings.rocksdb_options())
              for spec in TABLES}
    for table in tables.values():
        use_table_keys(table)
    pulse = Pulse(
        settings=settings, app=app, rules=rules, topics=topics, tables=tables,
        # what the profile agent reads: raw events (validated there; those keyed by another
        # customer's partition forwarded to customer-events) and customer-events
        inputs=app.topic(settings.topic("events"), settings.topic("customer-events"), **raw),
        population=PopulationBook(settings.partitions, tables["customer-state"], tables["sweep-index"],
                                  mode=rules.scoring.mode, counters=tables["profile-counters"]),
        activity=ActivityMonitor(lateness=settings.dedup_policy().lateness),
    )
    if rules.scoring.mode == "population":
        population_sync.register(pulse, pulse.population)
    profile.register(pulse)
    sweeper.register(pulse)
    sink.register(pulse)
    trainer.register(pulse)
    views.register(pulse)
    if settings.loop_stall_seconds:
        watch = StallWatch(settings.loop_stall_seconds, pulse.metrics.loop_stalls.observe)

        @app.task
        async def watch_event_loop() -> None:
            watch.start()
    return pulse
