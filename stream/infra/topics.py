"""Creating the missing topics of the topology (``stream/topology.py``) before a worker subscribes.

Faust declares its internal topics itself, but concurrently with the consumer joining its
group: on a fresh broker the group can be assigned before a new topic's metadata exists,
and the agent reading it then gets no partitions until the next metadata refresh (five
minutes). Creating every topic first, and waiting until the broker lists it, avoids that.
"""

from __future__ import annotations

import asyncio
import time

from stream.io.connect import KafkaAccess
from stream.settings import Settings
from stream.topology import KafkaTopic, required_topics


def _check_partition_counts(specs: list[KafkaTopic], described: list[dict]) -> None:
    # Tables are co-partitioned with the topics their agents read: counts must agree.
    wanted = {s.name: s.partitions for s in specs}
    wrong = {d["topic"]: len(d["partitions"]) for d in described
             if len(d["partitions"]) != wanted[d["topic"]]}
    if wrong:
        found = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
        raise RuntimeError(
            f"topic partition counts differ from PULSE_PARTITIONS={specs[0].partitions}: {found}. "
            "Set PULSE_PARTITIONS to the input topic's partition count (with a new PULSE_APP_ID "
            "and PULSE_TOPIC_PREFIX if the app's own topics already exist).")


async def ensure_topics(settings: Settings, timeout: float = 60.0) -> list[str]:
    """Create the missing topics and wait until the broker lists all of them; returns the created ones."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    specs = required_topics(settings)
    admin = AIOKafkaAdminClient(**settings.kafka.options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, 1 if len(settings.kafka_hosts) == 1 else -1,
                          topic_configs=s.config) for s in missing])
            for name, code, *_ in getattr(response, "topic_errors", []):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics([s.name for s in specs])
            ready = {d["topic"] for d in described if d.get("error_code", 0) == 0 and d.get("partitions")}
            if ready >= {s.name for s in specs}:
                _check_partition_counts(specs, described)
                return [s.name for s in missing]
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics not visible after {timeout:.0f}s: "
                                   f"{sorted({s.name for s in specs} - ready)}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def delete_app_topics(kafka: KafkaAccess, prefixes: tuple[str, ...], timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (an app's topic prefix and
    ``{app_id}-`` for Faust's changelogs) and wait until the broker no longer lists them."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if ours:
            await admin.delete_topics(ours)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(ours) & set(await admin.list_topics()):
            await asyncio.sleep(0.5)  # deletion completes asynchronously on the broker
        return ours
    finally:
        await admin.close()


async def topic_configs(kafka: KafkaAccess, topics: list[str], names: list[str]) -> dict[str, dict[str, str | None]]:
    """The broker's effective values of the configs ``names`` of each topic (missing topics left out)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=dict.fromkeys(names)) for topic in topics])
    finally:
        await admin.close()
    found: dict[str, dict[str, str | None]] = {}
    for response in responses:
        for error_code, _message, _kind, topic, entries in response.resources:
            if error_code == 0:
                found[topic] = {entry[0]: entry[1] for entry in entries}
    return found
