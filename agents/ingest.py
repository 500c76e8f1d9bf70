"""The validate agent: raw ``pulse.events`` → DLQ or ``customer-events`` keyed by customer, in
batches acknowledged only once every record they sent is acknowledged (``agents/batching.py``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agents.app import send_to_dlq
from agents.batching import by_partition, durable, gather_sends, held
from schemas import EVENT_ADAPTER
from stream.counters import bump
from stream.validate import Rejection, Rules, validate

if TYPE_CHECKING:
    from agents.app import Pulse

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCH_WITHIN_SECONDS = 0.05


def register(pulse: Pulse) -> None:
    s = pulse.settings
    counters = pulse.ingest_counters
    rules = Rules(max_bytes=s.max_event_bytes, total_tolerance=s.total_tolerance,
                  max_future=timedelta(seconds=s.max_future_seconds))

    @pulse.app.agent(pulse.events, name="validate", concurrency=1)
    async def validate_events(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            with held(events):
                sends = []
                for partition, group in by_partition(events):
                    counts: dict[str, int] = {"ingest.received": len(group)}
                    for event in group:
                        sends.append(await forward(event, counts))
                    for name, by in counts.items():
                        bump(counters, name, partition, by=by)
                await gather_sends(sends)
                await durable(pulse.app)

    async def forward(event: Any, counts: dict[str, int]) -> Awaitable[Any]:
        message = event.message
        try:
            result = validate(event.value, rules=rules)
        except Exception as exc:  # noqa: BLE001 - a validator bug must not stop the worker
            log.exception("validate: record at %s[%s]@%s failed", message.topic, message.partition,
                          message.offset)
            result = Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:2000])
        if isinstance(result, Rejection):
            name = f"ingest.rejected.{result.reason}"
            counts[name] = counts.get(name, 0) + 1
            return await send_to_dlq(pulse, event, result, stage="validate")
        counts["ingest.accepted"] = counts.get("ingest.accepted", 0) + 1
        return await pulse.customer_events.send(key=result.customer_id.encode(),
                                                value=EVENT_ADAPTER.dump_json(result))
