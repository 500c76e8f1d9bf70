"""agents/batching.take_batches: a batch closes when full, when it holds the newest record the
consumer has fetched of a partition, or when its window has passed; caught_up_with reads the
consumer's high watermark. Driven through faust's agent test context (in memory, no Kafka)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.exceptions import ConsumerNotStarted

from agents.batching import behind, caught_up_with, take_batches


async def _batches(values: list[int], max_: int, within: float, last_fetched: set[int],
                   want: int) -> list[list[int]]:
    """Put ``values`` through an agent that takes batches; return the first ``want`` batches."""
    app = faust.App("take-batches-test", store="memory://")
    seen: list[list[int]] = []
    enough = asyncio.Event()

    @app.agent()
    async def agent(stream: Any) -> None:
        async for events in take_batches(stream, max_, within, lambda message: message.value in last_fetched):
            seen.append([event.value for event in events])
            if len(seen) >= want:
                enough.set()

    async with agent.test_context() as context:
        for value in values:
            await context.put(value)
        await asyncio.wait_for(enough.wait(), timeout=10)
    return seen


async def test_a_batch_closes_at_the_newest_fetched_record_without_waiting_for_its_window() -> None:
    # a 60 s window: only the caught-up rule can close the second batch within the 10 s allowed
    assert await _batches([0, 1, 2, 3, 4], 3, 60.0, last_fetched={4}, want=2) == [[0, 1, 2], [3, 4]]


async def test_a_batch_that_is_never_caught_up_closes_when_full_or_after_its_window() -> None:
    assert await _batches(list(range(7)), 3, 0.05, last_fetched=set(), want=3) == [[0, 1, 2], [3, 4, 5], [6]]


async def test_without_a_window_a_batch_short_of_full_waits_for_the_caught_up_record() -> None:
    assert await _batches(list(range(5)), 10, 60.0, last_fetched={4}, want=1) == [[0, 1, 2, 3, 4]]


def _message(offset: int) -> SimpleNamespace:
    return SimpleNamespace(tp=("events", 0), offset=offset)


@pytest.mark.parametrize(("highwater", "offset", "expected"), [
    (10, 9, True),  # the last record fetched: the next offset is the high watermark
    (10, 8, False),  # the consumer holds one more
    (None, 9, False),  # nothing fetched yet
])
def test_caught_up_compares_the_next_offset_with_the_high_watermark(highwater: int | None, offset: int,
                                                                    expected: bool) -> None:
    consumer = SimpleNamespace(highwater=lambda tp: highwater)
    assert caught_up_with(consumer)(_message(offset)) is expected


@pytest.mark.parametrize("error", [
    AssertionError("Partition is not assigned"),  # aiokafka, for a partition being reassigned
    ConsumerNotStarted("Consumer thread not yet started"),  # faust, before its consumer runs
])
def test_a_partition_whose_high_watermark_is_unknown_is_not_caught_up(error: Exception) -> None:
    def highwater(tp: Any) -> int:
        raise error

    assert caught_up_with(SimpleNamespace(highwater=highwater))(_message(3)) is False


def test_a_partition_is_behind_when_any_of_its_topics_stops_short_of_the_newest_fetched() -> None:
    highwater = {("raw", 0): 100, ("customer-events", 0): 8}
    caught_up = caught_up_with(SimpleNamespace(highwater=highwater.get))

    def event(topic: str, offset: int) -> SimpleNamespace:
        return SimpleNamespace(message=SimpleNamespace(tp=(topic, 0), offset=offset))

    # the raw events stop short of offset 99; the group ends on a caught-up forwarded record (a tick)
    assert behind([event("raw", 40), event("raw", 41), event("customer-events", 7)], caught_up)
    assert not behind([event("raw", 98), event("raw", 99), event("customer-events", 7)], caught_up)
    assert not behind([event("customer-events", 7)], caught_up)
