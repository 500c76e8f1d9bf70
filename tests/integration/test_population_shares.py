"""A large population share through real Kafka: a partition's share at a million customers is
over the 1 MB a Faust worker's producer sends in one record, so it goes out compressed in chunks
(stream/core/shares.py; here cut smaller than by default, to have several), and a worker following
the topic puts it back exactly; a smaller share published after it tombstones the chunk keys it no
longer uses."""

from __future__ import annotations

import asyncio
import json
import random

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from agents.follow import follow
from agents.population_sync import publish_share
from stream.core.rfm import Population, RawRfmValues
from stream.core.shares import ShareReader, legacy_key
from stream.infra.topics import ensure_topics
from stream.io.connect import KafkaAccess
from tests.integration.conftest import Isolated

pytestmark = pytest.mark.integration

NOW_DAY = 20_400


def _share_of(customers: int, seed: int) -> Population:
    """One partition's share of a shop's population: first purchases over two years, mostly one
    to three purchase days each (what a partition holds at 4 x ``customers``)."""
    rng, population = random.Random(seed), Population()
    for _ in range(customers):
        first = NOW_DAY - rng.randrange(730)
        days = 1 + min(int(rng.expovariate(1 / 2.5)), 60)
        last = first if days == 1 else min(NOW_DAY, first + rng.randint(days - 1, max(days - 1, NOW_DAY - first)))
        orders = days + (rng.random() < 0.1)
        population.add(RawRfmValues(last, orders, int(orders * rng.lognormvariate(8, 1)), first, days))
    return population


async def _log(kafka: KafkaAccess, topic: str) -> list[tuple[bytes, bytes | None]]:
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        end, records = (await consumer.end_offsets([tp]))[tp], []
        while await consumer.position(tp) < end:
            for message in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                records.append((message.key, message.value))
        return records
    finally:
        await consumer.stop()


async def _follow_until(kafka: KafkaAccess, topic: str, partition: int, size: int) -> Population:
    """What a worker's follower puts together, once it holds a share of ``size`` customers."""
    reader, found = ShareReader(), asyncio.get_running_loop().create_future()

    def on_record(record: object) -> None:
        share = reader.add(record.key, record.value)  # type: ignore[attr-defined]
        if share is not None and share[0] == partition and share[1].size == size and not found.done():
            found.set_result(share[1])

    task = asyncio.create_task(follow(kafka, topic, on_record, start="beginning", what="test"))
    try:
        return await asyncio.wait_for(found, 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_share_of_a_million_customer_population_goes_through_kafka(isolated: Isolated) -> None:
    settings = isolated.settings
    topic = settings.topic("rfm-population")
    big, small = _share_of(250_000, seed=3), _share_of(2_000, seed=4)

    async def scenario() -> None:
        await ensure_topics(settings)
        # the limit a worker's producer has (Faust's producer_max_request_size)
        limit = faust.App("pulse-test-limits").conf.producer_max_request_size
        producer = AIOKafkaProducer(**settings.kafka.options(), max_request_size=limit, acks="all")
        await producer.start()
        try:
            whole = json.dumps({"partition": 2, "population": big.to_json()}).encode()
            assert len(whole) > limit
            with pytest.raises(MessageSizeTooLargeError):  # the share as one record, as before
                await producer.send_and_wait(topic, whole, key=legacy_key(2), partition=0)

            follower = ShareReader()  # what the publishing worker has read of the topic
            sent = await publish_share(producer, topic, 2, big, follower, max_chunk=100_000)  # (several chunks)
            assert sent > 1
            for key, value in await _log(settings.kafka, topic):
                follower.add(key, value)
            assert (await _follow_until(settings.kafka, topic, 2, big.size)).to_json() == big.to_json()

            live = follower.live(2)
            assert len(live) == sent
            assert await publish_share(producer, topic, 2, small, follower) == sent  # one chunk, the rest retired
        finally:
            await producer.stop()
        log = await _log(settings.kafka, topic)
        retired = {key for key, value in log[-(len(live) - 1):] if value is None}
        assert retired == live - {b"p2/0"}  # the small share needs one chunk: the others are tombstoned
        assert (await _follow_until(settings.kafka, topic, 2, small.size)).to_json() == small.to_json()

    asyncio.run(scenario())
