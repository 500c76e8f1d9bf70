"""The pipeline as the dashboard of ``pulse serve`` sees it from Kafka: throughput of the
events topic and consumer lag (sampled every few seconds, the last hour kept), dead letters
by reason (counted from the dead-letter topic), and the monitoring records (model quality,
drift) of ``pulse.monitoring``. It only reads; no consumer group, so it commits nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.io.replay import group_lags
from stream.settings import Settings
from stream.topology import processing_groups

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 5.0
KEEP_SAMPLES = 720  # an hour of samples
KEEP_MONITORING = 1000


class Observer:
    def __init__(self, settings: Settings, every: float = SAMPLE_SECONDS) -> None:
        self.settings, self.every = settings, every
        self.samples: deque[dict[str, Any]] = deque(maxlen=KEEP_SAMPLES)
        self.monitoring: deque[dict[str, Any]] = deque(maxlen=KEEP_MONITORING)
        self.dead_letters: Counter[str] = Counter()
        self.error: str | None = None
        self._last: tuple[float, int] | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"samples": list(self.samples), "dead_letters": dict(self.dead_letters.most_common()),
                "monitoring": list(self.monitoring), "error": self.error}

    async def run(self) -> None:
        """Follow Kafka until cancelled; a Kafka outage is reported in ``error`` and retried."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the API keeps serving lookups without Kafka
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("observer: %s; retrying in 5 s", self.error)
                await asyncio.sleep(5)

    async def _follow(self) -> None:
        kafka = self.settings.kafka
        admin = AIOKafkaAdminClient(**kafka.options())
        reader = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None,
                                  auto_offset_reset="earliest")
        await admin.start()
        await reader.start()
        try:
            assigned: set[TopicPartition] = set()
            next_sample = 0.0
            while True:
                if time.monotonic() >= next_sample:
                    assigned = await self._assign(admin, reader, assigned)
                    await self._sample(admin, reader)
                    self.error = None
                    next_sample = time.monotonic() + self.every
                batches = await reader.getmany(timeout_ms=500, max_records=1000) if assigned else {}
                if not assigned:
                    await asyncio.sleep(0.5)
                for tp, records in batches.items():
                    for record in records:
                        self._ingest(tp.topic, record.value, record.timestamp)
        finally:
            await reader.stop()
            await admin.close()

    async def _assign(self, admin: Any, reader: Any, assigned: set[TopicPartition]) -> set[TopicPartition]:
        topics = [self.settings.topic("monitoring"), self.settings.topic("events.dlq")]
        described = await admin.describe_topics(topics)
        wanted = {TopicPartition(d["topic"], p["partition"]) for d in described for p in d.get("partitions", [])}
        if wanted != assigned:
            reader.assign(sorted(wanted))
            for tp in wanted - assigned:
                await reader.seek_to_beginning(tp)
        return wanted

    async def _sample(self, admin: Any, reader: Any) -> None:
        topic = self.settings.topic("events")
        described = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for d in described for p in d.get("partitions", [])]
        if not partitions:
            return
        ends = sum((await reader.end_offsets(partitions)).values())
        groups = processing_groups(self.settings)
        lags = await group_lags(admin, reader, groups) or {}
        now = time.monotonic()
        rate = (ends - self._last[1]) / (now - self._last[0]) if self._last else None
        self._last = (now, ends)
        self.samples.append({"at": datetime.now(UTC).isoformat(), "events_in": ends,
                             "events_per_s": round(rate, 1) if rate is not None else None,
                             "lag": {group: sum(v for (g, _, _), v in lags.items() if g == group)
                                     for group in groups}})

    def _ingest(self, topic: str, value: bytes | None, timestamp_ms: int) -> None:
        try:
            record = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        if topic == self.settings.topic("events.dlq"):
            self.dead_letters[str(record.get("reason", "unknown"))] += 1
        else:
            self.monitoring.append({"sent_at": datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(), **record})
