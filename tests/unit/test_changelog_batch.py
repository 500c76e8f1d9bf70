"""agents/changelog.py without Kafka: which records a batch of table writes sends, in which
Kafka record batches, and which persisted offsets it records once they are acknowledged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.batching import NotDurable, make_current
from agents.changelog import BatchedTable, ChangelogBatch
from agents.table_keys import TABLE_KEYS


class Event:  # what make_current needs: a message with a partition (and a weak reference)
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


@dataclass
class Builder:
    capacity: int
    records: list[tuple[bytes, bytes | None]] = field(default_factory=list)

    def append(self, *, key: bytes, value: bytes | None, timestamp: None) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class Producer:
    """Gives each partition's batches consecutive offsets; ``refuse`` makes one batch fail."""

    def __init__(self, capacity: int = 3, refuse: int | None = None) -> None:
        self.capacity, self.refuse = capacity, refuse
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes | None]]]] = []
        self.ends: dict[tuple[str, int], int] = {}

    def create_batch(self) -> Builder:
        return Builder(self.capacity)

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.refuse == len(self.sent):
            future.set_exception(RuntimeError("MessageSizeTooLarge"))
        else:
            base = self.ends.get((topic, partition), 0)
            self.ends[topic, partition] = base + len(batch.records)
            future.set_result(SimpleNamespace(offset=base))
        self.sent.append((topic, partition, list(batch.records)))
        return future


class Store(dict[str, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[int, int] = {}

    def __delitem__(self, key: str) -> None:  # as Faust's store: deleting what is not there is no error
        self.pop(key, None)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = offset


class Table:
    def __init__(self, name: str) -> None:
        self.name, self.data = name, Store()
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: f"app-{name}-changelog")

    def __iter__(self) -> Any:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


writes = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["state", "index"]),
                            st.text(min_size=1, max_size=4), st.one_of(st.none(), st.binary(min_size=1, max_size=4))),
                  max_size=40)


@given(writes, st.integers(1, 4))
def test_a_batch_sends_each_partitions_writes_in_order_and_records_the_last_offset(
        batch: list[tuple[int, str, str, bytes | None]], capacity: int) -> None:
    producer = Producer(capacity)
    changelog = ChangelogBatch(producer)
    tables = {name: Table(name) for name in ("state", "index")}
    views = {name: BatchedTable(table, changelog) for name, table in tables.items()}
    events = [Event(partition) for partition in range(3)]
    expected: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
    for partition, name, key, value in batch:
        make_current(events[partition])
        if value is None:
            del views[name][key]
        else:
            views[name][key] = value
        expected.setdefault((f"app-{name}-changelog", partition), []).append((TABLE_KEYS.dumps(key), value))
    asyncio.run(changelog.flush())

    sent: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
    for topic, partition, records in producer.sent:
        assert 0 < len(records) <= capacity
        sent.setdefault((topic, partition), []).extend(records)
    assert sent == expected
    for name, table in tables.items():
        assert table.data.persisted == {partition: end - 1 for (topic, partition), end in producer.ends.items()
                                        if topic == f"app-{name}-changelog"}
    assert len(changelog) == 0  # sent once: a second flush sends nothing
    asyncio.run(changelog.flush())
    assert sum(len(records) for *_, records in producer.sent) == len(batch)


def test_a_refused_batch_is_not_durable_and_records_no_offset() -> None:
    producer = Producer(capacity=2, refuse=1)
    changelog = ChangelogBatch(producer)
    table = Table("state")
    view = BatchedTable(table, changelog)
    make_current(event := Event(0))
    for key in "abcde":
        view[key] = b"v"
    with pytest.raises(NotDurable, match="refused"):
        asyncio.run(changelog.flush())
    assert table.data.persisted == {}
    assert event.message.partition == 0


def test_an_unacknowledged_batch_times_out() -> None:
    class Silent(Producer):
        async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> asyncio.Future[Any]:
            return asyncio.get_running_loop().create_future()  # never acknowledged

    changelog = ChangelogBatch(Silent(), timeout=0.05)
    make_current(event := Event(1))  # (the current event is a weak reference: keep it)
    BatchedTable(Table("state"), changelog)["c1"] = b"{}"
    with pytest.raises(NotDurable, match="not acknowledged"):
        asyncio.run(changelog.flush())
    assert event.message.partition == 1


def test_a_write_outside_a_batch_is_refused() -> None:
    changelog = ChangelogBatch(Producer())
    make_current(Event(0))  # dropped at once: no current event
    table = Table("state")
    with pytest.raises(RuntimeError, match="outside of a batch"):
        BatchedTable(table, changelog)["c1"] = b"{}"
    assert dict(table.data) == {} and len(changelog) == 0


def test_reads_go_to_the_store_and_writes_store_at_once() -> None:
    changelog = ChangelogBatch(Producer())
    table = Table("state")
    view = BatchedTable(table, changelog)
    make_current(event := Event(2))
    view["c1"] = b"one"
    assert table.data["c1"] == b"one" and view["c1"] == b"one" and list(view) == ["c1"] and len(view) == 1
    assert view.pop("c1") == b"one" and "c1" not in view and len(changelog) == 2  # the write, then a tombstone
    assert view.pop("c1", None) is None and len(changelog) == 2  # nothing there: nothing written
    assert event.message.partition == 2
