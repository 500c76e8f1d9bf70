"""The Redis outbox records (stream/sinks/outbox.py): what the profile agent sends is what the
sink reads back, whatever the text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.sinks.outbox import RedisWrites

items = st.lists(st.text(max_size=40), max_size=12)


@given(items, items, items, st.one_of(st.none(), st.integers(0, 2**53)), st.integers(20, 400))
def test_records_read_back_as_the_writes_in_order(profiles: list[str], changes: list[str], alerts: list[str],
                                                  input_ms: int | None, max_bytes: int) -> None:
    writes = RedisWrites(profiles=profiles, tag_changes=changes, alerts=alerts, input_ms=input_ms)
    read = RedisWrites.merge(RedisWrites.from_record(record) for record in writes.to_records(max_bytes))
    assert (read.profiles, read.tag_changes, read.alerts) == (profiles, changes, alerts)
    assert read.input_ms == (input_ms if writes else None)
