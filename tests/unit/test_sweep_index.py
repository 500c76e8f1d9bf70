"""The sweep index as a batch sees it (stream/core/work.py ``IndexView``, stream/core/sweep.py):
each bucket is read and written at most once per batch however many customers are filed, and
what is stored equals filing one customer at a time straight into the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.sweep import bucket_key, cursor_key, decode_members, encode_members, file_boundary, hour_bucket
from stream.core.work import IndexView

START = datetime(2026, 12, 1, tzinfo=UTC)


class CountingTable(dict[str, bytes]):
    """A dict that counts reads and writes per key."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}
        self.writes: dict[str, int] = {}

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes[key] = self.writes.get(key, 0) + 1
        super().__setitem__(key, value)


def test_a_bucket_is_read_and_written_once_per_batch_however_many_customers_are_filed() -> None:
    table = CountingTable()
    view = IndexView(table)
    at = START + timedelta(minutes=30)
    for n in range(300):
        file_boundary(view, 0, f"c{n}", at)
    key = bucket_key(hour_bucket(at), 0)
    assert key not in table, "nothing is stored before the batch is"
    view.flush()
    assert decode_members(table[key]) == [f"c{n}" for n in range(300)]
    assert (table.reads[key], table.writes[key]) == (1, 1)


def test_a_customer_moved_out_of_the_only_bucket_it_was_in_leaves_no_empty_bucket() -> None:
    table = CountingTable()
    first, later = START + timedelta(minutes=10), START + timedelta(hours=5)
    view = IndexView(table)
    file_boundary(view, 0, "c1", first)
    view.flush()
    view = IndexView(table)
    file_boundary(view, 0, "c1", later, old=first)
    assert not view.members(bucket_key(hour_bucket(first), 0))
    assert bucket_key(hour_bucket(first), 0) not in view
    view.flush()
    assert bucket_key(hour_bucket(first), 0) not in table
    assert decode_members(table[bucket_key(hour_bucket(later), 0)]) == ["c1"]


moves = st.lists(st.tuples(st.integers(0, 7), st.one_of(st.none(), st.integers(0, 5 * 60))), max_size=60)


@given(moves=moves, batch=st.integers(1, 20))
@settings(max_examples=150, deadline=None)
def test_filing_through_batches_stores_what_filing_one_at_a_time_stores(
        moves: list[tuple[int, int | None]], batch: int) -> None:
    """Each move files a customer at a boundary (minutes after START) or unfiles them (None),
    from where it was filed before; batched through ``IndexView`` or straight into a dict."""
    straight: dict[str, bytes] = {}
    batched: dict[str, bytes] = {}
    view = IndexView(batched)
    filed: dict[str, datetime | None] = {}
    for done, (number, minutes) in enumerate(moves, 1):
        customer = f"c{number}"
        boundary = None if minutes is None else START + timedelta(minutes=minutes)
        old = filed.get(customer)
        file_boundary(_Direct(straight), 0, customer, boundary, old=old)
        file_boundary(view, 0, customer, boundary, old=old)
        filed[customer] = boundary
        if done % batch == 0:
            view.flush()
            view = IndexView(batched)
    view.flush()
    assert batched.keys() == straight.keys()
    assert all(set(decode_members(batched[key])) == set(decode_members(straight[key]))
               for key in straight if key != cursor_key(0))
    assert batched.get(cursor_key(0)) == straight.get(cursor_key(0))


operations = st.lists(st.one_of(
    st.tuples(st.just("file"), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3 * 60))),
    st.tuples(st.just("set"), st.sampled_from(["applied@p0", "x"]), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("set"), st.sampled_from([bucket_key(hour_bucket(START) + n, 0) for n in range(3)]),
              st.lists(st.sampled_from(["c1", "c2", "c4"]), min_size=1, unique=True).map(encode_members)),
    st.tuples(st.just("delete"), st.sampled_from(["applied@p0", "x", bucket_key(hour_bucket(START), 0)]), st.none()),
    st.tuples(st.just("whole"), st.integers(0, 2), st.lists(st.sampled_from(["c1", "c2", "c3"]), unique=True)),
), max_size=40)


@given(operations=operations, batch=st.integers(1, 10))
@settings(max_examples=200, deadline=None)
def test_the_batch_view_reads_and_stores_what_a_plain_table_would(operations: list[tuple], batch: int) -> None:
    """Filings, whole buckets set, plain keys set and deleted, in batches: at every step the view
    answers as the table written straight through, and stores the same keys and values."""
    straight: dict[str, bytes] = {}
    batched: dict[str, bytes] = {}
    view, direct = IndexView(batched), _Direct(straight)
    filed: dict[str, datetime | None] = {}
    for done, (kind, what, value) in enumerate(operations, 1):
        if kind == "file":
            customer = f"c{what}"
            boundary = None if value is None else START + timedelta(minutes=value)
            file_boundary(direct, 0, customer, boundary, old=filed.get(customer))
            file_boundary(view, 0, customer, boundary, old=filed.get(customer))
            filed[customer] = boundary
        elif kind == "set":
            straight[what] = view[what] = value
        elif kind == "delete":
            if what in straight:
                del straight[what], view[what]
            else:
                assert what not in view
        else:
            key = bucket_key(hour_bucket(START) + what, 0)
            direct.set_members(key, value)
            view.set_members(key, value)
            filed = {c: b for c, b in filed.items() if c not in value}  # filed twice: not followed further
        assert dict(view) == straight
        assert len(view) == len(straight)
        if done % batch == 0:
            view.flush()
            view = IndexView(batched)
    view.flush()
    assert batched == straight


class _Direct:
    """A sweep index written straight through: every bucket decoded and encoded per call (what
    filing did before a batch kept its buckets decoded)."""

    def __init__(self, table: dict[str, bytes]) -> None:
        self.table = table

    def get(self, key: str, /) -> bytes | None:
        return self.table.get(key)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key] = value

    def members(self, key: str) -> list[str]:
        return decode_members(self.table.get(key))

    def set_members(self, key: str, members: list[str]) -> None:
        if members:
            self.table[key] = encode_members(members)
        else:
            self.table.pop(key, None)
