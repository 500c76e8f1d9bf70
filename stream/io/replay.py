"""`pulse replay`: read an event file (jsonl, csv, or the CDNOW purchase log) and produce it."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from stream.io.connect import KafkaAccess

FORMATS = ("jsonl", "csv", "cdnow")
NESTED_COLUMNS = frozenset({"items", "consent"})


class ReplayError(ValueError):
    """The input file cannot be read; the message names the file, line and problem."""


def read_events(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "cdnow":
        return read_cdnow(path)
    raise ReplayError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ReplayError(f"{path}:{number}: not JSON ({exc})") from None


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    """One event per row, columns named like the event fields; nested fields (``items``,
    ``consent``) are JSON text in their cell."""
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), 2):
            event: dict[str, Any] = {}
            for column, cell in row.items():
                if column is None or cell in ("", None):
                    continue
                if column in NESTED_COLUMNS:
                    try:
                        event[column] = json.loads(cell)
                    except ValueError as exc:
                        raise ReplayError(f"{path}:{number}: column {column} is not JSON ({exc})") from None
                else:
                    event[column] = cell
            yield event


def read_cdnow(path: Path) -> Iterator[dict[str, Any]]:
    """The CDNOW master log: ``customer_id yyyymmdd number_of_cds dollar_value`` per line.

    Each line becomes a purchase whose event id is derived from the file name and line
    number, so replaying the file twice changes nothing.
    """
    stem = path.name
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts or not parts[0].isdigit():
                continue  # header or blank line
            try:
                customer, day, cds, value = parts[:4]
                when = datetime.combine(date(int(day[:4]), int(day[4:6]), int(day[6:8])),
                                        datetime.min.time(), tzinfo=UTC)
                total = Decimal(value)
                quantity = int(cds)
            except (ValueError, InvalidOperation) as exc:
                raise ReplayError(f"{path}:{number}: not a CDNOW line ({exc}): {line.strip()!r}") from None
            yield {
                "type": "purchase",
                "event_id": f"cdnow:{stem}:{number}",
                "customer_id": customer,
                "event_time": when.isoformat(),
                "channel": "web",
                "order_id": f"cdnow:{stem}:{number}",
                "total": str(total),
                "currency": "USD",
                "items": [{"sku": "cd", "category": "music", "quantity": quantity,
                           "unit_price": str((total / quantity).quantize(Decimal("0.0001")))}]
                if quantity > 0 else [],
            }


def select(events: Iterator[dict[str, Any]], until: datetime | None) -> list[dict[str, Any]]:
    """Events with event time up to ``until`` (inclusive), ordered by event time (stable). One
    without a readable event time still goes out (the validator rejects it), where it was among
    its neighbours in the file: it sorts with the event before it.

    >>> [e["n"] for e in select(iter([{"n": 1, "event_time": "2024-01-02T00:00:00Z"}, {"n": 2},
    ...     {"n": 3, "event_time": "2024-01-01T00:00:00Z"}]), None)]
    [3, 1, 2]
    """
    chosen, previous = [], datetime.min.replace(tzinfo=UTC)
    for event in events:
        when = _event_time(event)
        if when is None:
            when = previous
        elif until is not None and when > until:
            continue
        previous = when
        chosen.append((when, event))
    chosen.sort(key=lambda pair: pair[0])
    return [event for _, event in chosen]


def _event_time(event: dict[str, Any]) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(event["event_time"]))
    except (KeyError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def paced(events: list[dict[str, Any]], speed: float | None,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """Yield events as fast as possible, or at ``speed`` × real time between event times."""
    if not speed or not events:
        yield from events
        return
    start_wall, start_event = time.monotonic(), None
    for event in events:
        when = _event_time(event)  # one without a readable time goes with the event before it
        if when is None:
            yield event
            continue
        start_event = start_event or when
        due = (when - start_event).total_seconds() / speed
        delay = due - (time.monotonic() - start_wall)
        if delay > 0:
            sleep(delay)
        yield event


async def group_lags(admin: Any, consumer: Any, groups: Mapping[str, Sequence[str]]
                     ) -> dict[tuple[str, str, int], int] | None:
    """Records each consumer group has still to process, per ``(group, topic, partition)``:
    the end offset minus the group's committed offset (None while a topic has no partitions
    yet). ``admin`` is an aiokafka admin client, ``consumer`` a consumer without a group."""
    from aiokafka import TopicPartition

    lags: dict[tuple[str, str, int], int] = {}
    for group, topics in groups.items():
        described = await admin.describe_topics(list(topics))
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d.get("partitions", [])]
        if not partitions:
            return None
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        lags.update({(group, tp.topic, tp.partition): ends[tp] - (committed[tp].offset if tp in committed else 0)
                     for tp in partitions})
    return lags


async def wait_until_processed(kafka: KafkaAccess, groups: Mapping[str, Sequence[str]], timeout: float,
                               progress: Callable[[int], None] | None = None,
                               settle: float = 0.5) -> dict[str, int]:
    """Wait until each consumer group's committed offsets reach the end of its topics
    (``{group: [topic, ...]}``, see :func:`stream.topology.processing_groups`), twice, ``settle``
    seconds apart (longer than a sweep interval: the sweep tick after the last event applies
    the population rescoring that the last events made due).

    The Redis sink commits the outbox only after writing it, so a caught-up outbox means
    Redis is flushed. Returns the partitions still behind, as ``{"topic[partition]": records}``
    (empty = done).
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    admin = AIOKafkaAdminClient(**kafka.options())
    consumer = AIOKafkaConsumer(**kafka.options())
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        behind: dict[str, int] = {"(no partitions found)": 0}
        caught_up_since: float | None = None
        while time.monotonic() < deadline:
            try:
                found = await group_lags(admin, consumer, groups)
            except GroupCoordinatorNotAvailableError:  # a broker just started: its offsets topic is being made
                found = None
            lags = {f"{topic}[{partition}]": lag for (_, topic, partition), lag in (found or {}).items()}
            if not lags:
                await asyncio.sleep(0.5)
                continue
            behind = {name: lag for name, lag in lags.items() if lag > 0}
            lag = sum(behind.values())
            if progress:
                progress(lag)
            # Caught up, and caught up again at least ``settle`` seconds later: everything
            # produced in between (sweep ticks and what they caused) has been processed too.
            # (Not "continuously": ticks and commit intervals leave brief lags all the time.)
            if not lag:
                if caught_up_since is None:
                    caught_up_since = time.monotonic()
                elif time.monotonic() - caught_up_since >= settle:
                    return {}
            await asyncio.sleep(0.5)
        return behind
    finally:
        await consumer.stop()
        await admin.close()
