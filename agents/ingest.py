"""The validate agent: raw ``pulse.events`` → DLQ or ``customer-events`` keyed by customer."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from agents.app import send_to_dlq
from schemas import EVENT_ADAPTER
from stream.counters import bump
from stream.validate import Rejection, Rules, validate

if TYPE_CHECKING:
    from agents.app import Pulse

log = logging.getLogger(__name__)


def register(pulse: Pulse) -> None:
    s = pulse.settings
    counters = pulse.ingest_counters
    rules = Rules(max_bytes=s.max_event_bytes, total_tolerance=s.total_tolerance,
                  max_future=timedelta(seconds=s.max_future_seconds))

    @pulse.app.agent(pulse.events, name="validate", concurrency=1)
    async def validate_events(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            bump(counters, "ingest.received", message.partition)
            try:
                result = validate(event.value, rules=rules)
            except Exception as exc:  # noqa: BLE001 - a validator bug must not stop the worker
                log.exception("validate: record at %s[%s]@%s failed", message.topic, message.partition,
                              message.offset)
                result = Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:2000])
            if isinstance(result, Rejection):
                bump(counters, f"ingest.rejected.{result.reason}", message.partition)
                await send_to_dlq(pulse, event, result, stage="validate")
                continue
            bump(counters, "ingest.accepted", message.partition)
            await pulse.customer_events.send(key=result.customer_id.encode(),
                                             value=EVENT_ADAPTER.dump_json(result))
