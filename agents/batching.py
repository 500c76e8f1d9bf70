"""How the stateful agents take batches without losing anything.

- ``stream.take_events`` acknowledges a batch after the loop body, but also when the body
  fails or is cancelled (its ``finally``). :func:`held` marks such a batch's messages as
  already acknowledged, so the consumer never records their offsets and they are read again.
- Faust tables choose the RocksDB instance and the changelog partition from the *current
  event*; a batch mixes partitions, so :func:`by_partition` makes an event of each
  partition current while that partition's records are processed. It sets only the
  context variable of the agent's own task: ``Stream._set_current_event`` would also move
  ``stream.current_event``, which ``take_events`` reads to collect the *next* batch (that
  lost one event and repeated another per batch).
- A table write is only queued in Faust's producer buffer; :func:`durable` waits until it
  and every record sent so far are acknowledged by the broker, so a batch is never
  acknowledged before its effects would survive a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event

DURABLE_TIMEOUT_SECONDS = 60.0


class NotDurable(RuntimeError):
    """The producer stopped (or stalled) before a batch's writes were acknowledged."""


def by_partition(events: Sequence[Any]) -> Iterator[tuple[int, list[Any]]]:
    """Yield ``(partition, events)`` in partition order, each with its last event current."""
    groups: dict[int, list[Any]] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    for partition in sorted(groups):
        _current_event.set(weakref.ref(groups[partition][-1]))
        yield partition, groups[partition]


@contextmanager
def held(events: Sequence[Any]) -> Iterator[None]:
    """On any failure or cancellation inside, keep the batch unacknowledged (see module doc)."""
    try:
        yield
    except BaseException:
        for event in events:
            event.message.acked = True  # the consumer then skips it: its offset is never committed
        raise


async def gather_sends(sends: Sequence[Awaitable[Any]]) -> None:
    """Wait for the broker's acknowledgement of every record sent."""
    if sends:
        await asyncio.gather(*sends)


async def durable(app: Any, timeout: float = DURABLE_TIMEOUT_SECONDS) -> None:
    """Wait until the table changelog records queued so far are sent and acknowledged."""
    producer = app.producer
    buffer = producer.buffer
    deadline = time.monotonic() + timeout
    while buffer.size:
        if buffer.should_stop or time.monotonic() > deadline:
            raise NotDurable(f"{buffer.size} table changelog records not sent (producer stopping or stalled)")
        buffer.message_sent.clear()
        try:
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=0.5)
        except TimeoutError:
            continue
    if producer._producer is not None:
        await asyncio.wait_for(producer._producer.flush(), timeout=max(deadline - time.monotonic(), 1.0))


def _not_buffer_chatter(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    return not message.startswith(("producer buffer full size", "producer flush took"))


def quiet_producer_buffer_logs() -> None:
    """A batch's table writes fill Faust's producer buffer (100 records) by design, and Faust
    logs a warning each time; :func:`durable` waits for the buffer anyway."""
    logging.getLogger("faust.transport.producer").addFilter(_not_buffer_chatter)
