"""The Redis half of an erasure (``stream/core/erasure.py``) and its receipt.

The Redis sink calls :func:`erase_from_redis` when it reaches an erasure in the outbox (after
every earlier write of the customer, which come before it in the same partition), then
:func:`receipt` lists each store with the time it was cleared and what stays until the
topics' retention removes it. The receipt holds a digest of the id, not the id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from stream.core.erasure import RECEIPT_PREFIX, Erasure, subject_digest
from stream.sinks.redis import CUSTOMER_STREAMS, KEY_PREFIX, customer_key

SCAN_COUNT = 1000
RECEIPT_TTL_SECONDS = 400 * 86_400  # receipts are the controller's evidence: kept over a year
# Topics whose records about the customer stay until retention deletes them (not compacted).
RETAINED_TOPICS = ("events", "customer-events", "events.dlq", "redis-outbox", "tag-changes", "alerts",
                   "churn-labels", "alert-outcomes")
# How long a compacted topic may keep an erased value (and then its tombstone): stream/topology.py
COMPACTED_GONE_WITHIN = "max.compaction.lag.ms + delete.retention.ms"


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def stream_entries(client: aioredis.Redis, stream: str, customer_id: str) -> list[tuple[str, dict[str, str]]]:
    """The entries of ``stream`` about the customer (a scan in pages of SCAN_COUNT)."""
    found: list[tuple[str, dict[str, str]]] = []
    start = "-"
    while True:
        page: Any = await client.xrange(stream, min=start, count=SCAN_COUNT)
        if not page:
            return found
        found += [(str(entry_id), fields) for entry_id, fields in page if fields.get("customer_id") == customer_id]
        if len(page) < SCAN_COUNT:
            return found
        start = f"({page[-1][0]}"


async def erase_from_redis(client: aioredis.Redis, customer_id: str, prefix: str = KEY_PREFIX
                           ) -> list[dict[str, Any]]:
    """Remove everything Redis holds about the customer; per store, what was removed and when.
    ``client`` decodes responses. Safe to repeat (a redelivered outbox record)."""
    stores: list[dict[str, Any]] = []
    hash_key = customer_key(customer_id, prefix)
    # store names with "{id}", not the id: the receipt outlives the data
    stores.append({"store": f"redis hash {customer_key('{id}', prefix)}", "removed": int(await client.delete(hash_key)),
                   "cleared_at": _now()})
    removed = 0
    async for segment in client.scan_iter(match=f"{prefix}seg:*", count=SCAN_COUNT):
        removed += int(await client.srem(segment, customer_id))  # type: ignore[misc]
    stores.append({"store": f"redis segment sets {prefix}seg:*", "removed": removed, "cleared_at": _now()})
    applied = int(await client.hdel(f"{prefix}tags:applied", customer_id))  # type: ignore[misc]
    stores.append({"store": f"redis hash {prefix}tags:applied (field)", "removed": applied, "cleared_at": _now()})
    for name in CUSTOMER_STREAMS.values():
        stream = f"{prefix}{name}"
        entries = await stream_entries(client, stream, customer_id)
        if entries:
            await client.xdel(stream, *(entry_id for entry_id, _ in entries))
        markers = [f"{prefix}alerts:seen:{fields['alert_id']}" for _, fields in entries
                   if name == "alerts" and fields.get("alert_id")]
        if markers:
            await client.delete(*markers)
        stores.append({"store": f"redis stream {stream}", "removed": len(entries), "cleared_at": _now()})
    return stores


def worker_stores(erasure: Erasure, state_changelog: str) -> list[dict[str, Any]]:
    """What the owning worker cleared, as receipt entries."""
    at = erasure.tables_cleared_at
    return [
        {"store": "table customer-state (worker RocksDB)", "removed": int(erasure.had_state), "cleared_at": at},
        {"store": f"changelog {state_changelog}[{erasure.partition}]", "action": "tombstone written",
         "cleared_at": at, "values_gone_within": COMPACTED_GONE_WITHIN},
        {"store": "table sweep-index (time-driven boundaries)", "cleared_at": at},
        {"store": "RFM population (histograms, and the behaviour sample under a one-way digest of the id, in "
                  "the shares on the rfm-population topic)",
         "action": "recomputed without the customer", "cleared_at": at, "values_gone_within": COMPACTED_GONE_WITHIN},
        {"store": "open churn predictions and pending labels (in the state)", "cleared_at": at},
    ]


def retained(retention_ms: Mapping[str, int | None], cleared_at: datetime) -> list[dict[str, Any]]:
    """The topics that keep records about the customer until retention removes them.

    >>> retained({"t": 86_400_000, "u": None}, datetime(2026, 1, 1, tzinfo=UTC))[0]["gone_by"]
    '2026-01-02T00:00:00+00:00'
    """
    rows = []
    for topic, ms in retention_ms.items():
        if ms is None:
            gone_by = "unknown (the topic's retention could not be read)"
        elif ms < 0:
            gone_by = "never (retention is unlimited: delete the topic or shorten its retention)"
        else:
            gone_by = (cleared_at + timedelta(milliseconds=ms)).isoformat()
        rows.append({"topic": topic, "retention_ms": ms, "gone_by": gone_by})
    return rows


def receipt(erasure: Erasure, worker: list[dict[str, Any]], redis_stores: list[dict[str, Any]],
            retention: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "request_id": erasure.request_id,
        "subject_sha256": subject_digest(erasure.customer_id),
        "requested_at": erasure.requested_at,
        "completed_at": _now(),
        "stores": [*worker, *redis_stores],
        "remains_until_retention": retention,
        "suppressed": True,
        "note": "later events for this customer are dead-lettered without payload and not profiled, "
                "unless they carry analytics consent given after the erasure",
    }


def receipt_key(request_id: str, prefix: str = KEY_PREFIX) -> str:
    """
    >>> receipt_key("r1")
    'pulse:privacy:receipt:r1'
    """
    return f"{prefix}{RECEIPT_PREFIX}{request_id}"


async def store_receipt(client: aioredis.Redis, document: Mapping[str, Any], prefix: str = KEY_PREFIX) -> None:
    await client.set(receipt_key(str(document["request_id"]), prefix), json.dumps(document),
                     ex=RECEIPT_TTL_SECONDS)
