"""A data-subject access export (``pulse access``): everything Customer Pulse holds about one
customer, from where it is held, as one JSON document.

- the customer's state, as its table's changelog holds it (the newest record of its key, in
  the partition that owns the customer): what a worker restores after a restart;
- the Redis profile hash, the segment set it is in, its entries in the tag-change and alert
  streams and in the alert relay's dead letters;
- its delayed churn labels (``churn-labels``) and its alerts' outcomes (``alert-outcomes``);
- the identities-table records of its aliases (the anonymous ids linked to it: their own
  activity and links), or of the requested id itself when it is an anonymous id.

The raw events (``events``, ``customer-events``) and dead letters (``events.dlq``) are not
read (a full scan of the input); the document says so and for how long Kafka keeps them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.core.owner import owner_partition
from stream.io.connect import KafkaAccess
from stream.settings import Settings
from stream.sinks.erasure import stream_entries
from stream.sinks.redis import CUSTOMER_STREAMS, KEY_PREFIX, customer_key, segment_key
from stream.topology import changelog_topic


async def read_keyed(kafka: KafkaAccess, topic: str, key: bytes | None, partitions: list[int] | None = None
                     ) -> list[bytes]:
    """The values of every record with ``key`` (None: every record) in ``topic`` (all partitions,
    or these), oldest first within a partition; an absent topic has none."""
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    known = {p["partition"] for d in described if not d.get("error_code") for p in d.get("partitions", [])}
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        chosen = [TopicPartition(topic, p) for p in sorted(known) if partitions is None or p in partitions]
        if not chosen:
            return []
        consumer.assign(chosen)
        await consumer.seek_to_beginning(*chosen)
        ends = await consumer.end_offsets(chosen)
        found: list[bytes] = []
        remaining = {tp for tp in chosen if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for records in batches.values():
                found += [r.value or b"" for r in records if key is None or r.key == key]
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:  # offsets, not records: compaction leaves gaps
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()


async def subject_access(settings: Settings, requested_id: str) -> dict[str, Any]:
    customer_id = settings.stored_id(requested_id)  # the pseudonym, with pseudonymous keys
    key = customer_id.encode()
    owner = owner_partition(customer_id, settings.partitions)
    table_key = json.dumps(customer_id).encode()  # Faust serializes table keys as JSON
    states = await read_keyed(settings.kafka, changelog_topic(settings, "customer-state"), table_key,
                              [owner])
    labels = await read_keyed(settings.kafka, settings.topic("churn-labels"), key)
    outcomes = await read_keyed(settings.kafka, settings.topic("alert-outcomes"), key)

    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        profile: dict[str, str] = await client.hgetall(customer_key(customer_id))  # type: ignore[misc,assignment]
        streams: dict[str, list[dict[str, str]]] = {}
        for name, suffix in CUSTOMER_STREAMS.items():
            entries = await stream_entries(client, f"{KEY_PREFIX}{suffix}", customer_id)
            streams[name] = [{"id": entry_id, **fields} for entry_id, fields in entries]
        segment = profile.get("segment")
        in_segment = bool(segment) and bool(await client.sismember(segment_key(segment or ""),  # type: ignore[misc]
                                                                   customer_id))
    finally:
        await client.aclose()

    latest = states[-1] if states else b""
    state = json.loads(latest) if latest else None  # an empty newest record is a tombstone
    identities = await _identities(settings, [customer_id, *(state or {}).get("aliases", [])])
    return {
        "customer_id": requested_id,
        **({"stored_as": customer_id} if customer_id != requested_id else {}),
        "generated_at": datetime.now(UTC).isoformat(),
        "state": state,
        # the customer's aliases' own activity, or the requested id's if it is an anonymous id
        "identities": identities,
        "profile": profile or None,
        "segment_sets": [segment] if in_segment else [],
        **streams,
        "churn_labels": [json.loads(value) for value in labels if value],
        "alert_outcomes": [json.loads(value) for value in outcomes if value],
        "sources": {
            "state": f"{changelog_topic(settings, 'customer-state')}[{owner}]",
            "profile": customer_key(customer_id), "segment_sets": segment_key("*"),
            **{name: f"{KEY_PREFIX}{suffix}" for name, suffix in CUSTOMER_STREAMS.items()},
            "churn_labels": settings.topic("churn-labels"),
            "alert_outcomes": settings.topic("alert-outcomes"),
            "identities": changelog_topic(settings, "identities"),
        },
        "not_included": [f"raw events in {settings.topic('events')} and {settings.topic('customer-events')}, and "
                         f"dead letters in {settings.topic('events.dlq')}: kept until the topics' retention "
                         "(Kafka's default: 7 days) removes them"],
    }


async def _identities(settings: Settings, ids: list[str]) -> dict[str, Any]:
    """The identities-table records of these ids that have one (anonymous ids: stream/core/identity.py)."""
    found: dict[str, Any] = {}
    for anonymous_id in ids:
        records = await read_keyed(settings.kafka, changelog_topic(settings, "identities"),
                                   json.dumps(anonymous_id).encode(),
                                   [owner_partition(anonymous_id, settings.partitions)])
        if records and records[-1]:
            found[anonymous_id] = json.loads(records[-1])
    return found
