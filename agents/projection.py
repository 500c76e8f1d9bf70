"""The Redis projection, written from the batches that computed it (no topic and agent in between).

The profile agent hands each batch's profiles, tag changes and alerts to :class:`Projection`
once its table writes and Kafka outputs are durable, and goes on with the next batch. A
background task writes the queued batches in order, several at a time in one pipelined
round (the newest profile version of each customer only), and acknowledges each batch's
input records after its write. A Redis outage therefore delays the projection and the
commits but loses nothing, and processing continues into the tables until
``max_pending`` batches wait; after a crash the unacknowledged batches are processed again
and rewritten idempotently (versioned hashes, tag changes and alerts once by id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis

from schemas import Alert, Profile, TagChange
from stream.sinks import RedisSink, write_with_retry

log = logging.getLogger(__name__)

RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)
MAX_PENDING_BATCHES = 200


@dataclass
class Pending:
    """One batch's Redis writes and the input records whose acknowledgement waits for them."""

    events: Sequence[Any]
    profiles: list[Profile] = field(default_factory=list)
    tag_changes: list[TagChange] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


def newest_profiles(profiles: Sequence[Profile]) -> list[Profile]:
    """The highest version of each customer's profile (Redis ignores the older ones anyway)."""
    latest: dict[str, Profile] = {}
    for profile in profiles:
        seen = latest.get(profile.customer_id)
        if seen is None or profile.version > seen.version:
            latest[profile.customer_id] = profile
    return list(latest.values())


class Projection:
    def __init__(self, sink: RedisSink, stream: Any, max_pending: int = MAX_PENDING_BATCHES) -> None:
        self.sink = sink
        self.stream = stream
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=max_pending)
        self.writer: asyncio.Task[None] | None = None

    async def submit(self, pending: Pending) -> None:
        """Queue a batch; its records are acknowledged when it is written. Waits while full."""
        if self.writer is not None and self.writer.done() and not self.writer.cancelled():
            failure = self.writer.exception()
            if failure is not None:  # not retryable: stop the worker; the batches are processed again
                raise RuntimeError(f"the Redis projection failed: {failure!r}") from failure
        for event in pending.events:
            event.message.acked = True  # take_events' own acknowledgement must not count (see release)
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self._write_forever())
        await self.queue.put(pending)

    async def _write_forever(self) -> None:
        while True:
            batches = [await self.queue.get()]
            while not self.queue.empty():
                batches.append(self.queue.get_nowait())
            await self.write(batches)
            for batch in batches:
                await self.release(batch.events)

    async def write(self, batches: Sequence[Pending]) -> None:
        profiles = newest_profiles([p for batch in batches for p in batch.profiles])
        changes = [c for batch in batches for c in batch.tag_changes]
        alerts = [a for batch in batches for a in batch.alerts]
        await write_with_retry(partial(self.sink.write_profiles, profiles), retry_on=RETRYABLE)
        await write_with_retry(partial(self.sink.write_tag_changes, changes), retry_on=RETRYABLE)
        await write_with_retry(partial(self.sink.write_alerts, alerts), retry_on=RETRYABLE)

    async def release(self, events: Sequence[Any]) -> None:
        """Acknowledge a written batch's records (in order: the committed offset never passes
        a batch still waiting)."""
        for event in events:
            event.message.acked = False
            await self.stream.ack(event)
