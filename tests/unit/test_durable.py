"""agents/batching.durable: a batch's table writes count as durable only once the broker has
acknowledged each of their changelog records, not when Faust's producer buffer is empty. Driven
with a stand-in for the buffer that does what Faust's does (a task takes each record from a
queue and hands it to the producer, which may wait first) and Faust's own ``FutureMessage``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types.tuples import FutureMessage

from agents.batching import NotDurable, durable, unacknowledged


class Buffer:
    """Faust's ProducerBuffer in miniature: ``put`` queues, a task sends one record at a time."""

    def __init__(self) -> None:
        self.pending: asyncio.Queue[Any] = asyncio.Queue()
        self.broker = asyncio.Event()  # set: the broker acknowledges what it was given
        self.given: list[Any] = []

    def put(self, fut: Any) -> None:
        self.pending.put_nowait(fut)

    @property
    def size(self) -> int:
        return self.pending.qsize()

    async def handle_pending(self, refuse: bool = False) -> None:
        while True:
            fut = await self.pending.get()  # the record leaves the buffer here ...
            await self.broker.wait()  # ... and the producer may wait (metadata, say) before it has it
            self.given.append(fut)
            if refuse:
                fut.set_exception(RuntimeError("MessageSizeTooLargeError"))
            else:
                fut.set_result(None)


def _record() -> FutureMessage:
    return FutureMessage(SimpleNamespace())  # type: ignore[arg-type]


async def test_durable_waits_for_a_record_that_left_the_buffer_but_was_not_acknowledged() -> None:
    buffer = Buffer()
    app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, _producer=None))
    unacknowledged(buffer)  # as the profile agent does before its first batch
    handler = asyncio.create_task(buffer.handle_pending())
    record = _record()
    buffer.put(record)
    await asyncio.sleep(0.01)

    waiting = asyncio.create_task(durable(app))
    await asyncio.sleep(0.05)
    # the buffer is empty, but its record is still on its way: not durable yet
    assert buffer.size == 0 and not buffer.given and not waiting.done()

    buffer.broker.set()
    await asyncio.wait_for(waiting, timeout=1)
    assert record.done() and buffer.given == [record]
    await asyncio.sleep(0)
    assert not unacknowledged(buffer)  # acknowledged records are no longer tracked
    handler.cancel()


async def test_a_refused_changelog_record_is_not_durable() -> None:
    buffer = Buffer()
    app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, _producer=None))
    unacknowledged(buffer)
    buffer.broker.set()
    handler = asyncio.create_task(buffer.handle_pending(refuse=True))
    buffer.put(_record())
    with pytest.raises(NotDurable, match="refused"):
        await asyncio.wait_for(durable(app), timeout=1)
    handler.cancel()


async def test_records_never_acknowledged_end_in_not_durable_after_the_timeout() -> None:
    buffer = Buffer()
    app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, _producer=None))
    unacknowledged(buffer)
    buffer.put(_record())  # no handler: the producer stalled
    with pytest.raises(NotDurable, match="not acknowledged in"):
        await durable(app, timeout=0.05)


async def test_nothing_queued_is_durable_at_once() -> None:
    buffer = Buffer()
    app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, _producer=None))
    unacknowledged(buffer)
    await asyncio.wait_for(durable(app), timeout=0.1)
