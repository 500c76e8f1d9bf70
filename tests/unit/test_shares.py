"""Population shares as chunked records (stream/core/shares.py): whatever the size of a share and
of its chunks, a reader puts back exactly the population published; and a reader that starts
on the compacted topic, as a new worker does, finds each partition's newest share."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.rfm import Population
from stream.core.shares import PENDING_SHARES, ShareReader, legacy_key, share_records

counts = st.integers(min_value=1, max_value=50)
populations = st.builds(
    Population,
    days=st.dictionaries(st.integers(18_000, 20_000), counts, max_size=30),
    orders=st.dictionaries(st.integers(1, 40), counts, max_size=10),
    monetary=st.dictionaries(st.integers(0, 80), counts, max_size=10),
    size=st.integers(0, 10_000),
    purchases=st.dictionaries(st.tuples(st.integers(1, 30), st.integers(18_000, 20_000), st.integers(18_000, 20_000)),
                              counts, max_size=200),
    spend=st.dictionaries(st.tuples(st.integers(1, 30), st.integers(0, 80)), counts, max_size=30),
    category_orders=st.dictionaries(st.sampled_from(["books", "music", "toys", "*"]), counts),
    follows=st.dictionaries(st.tuples(st.sampled_from(["books", "music"]), st.sampled_from(["toys", "garden"])),
                            counts),
    behaviour=st.dictionaries(st.text("0123456789abcdef", min_size=8, max_size=8),
                              st.tuples(st.floats(-5, 5), st.floats(-5, 5)), max_size=5),
)


def _read(reader: ShareReader, records: list[tuple[bytes, bytes | None]]) -> list[tuple[int, Population]]:
    return [share for key, value in records if (share := reader.add(key, value)) is not None]


def _compacted(log: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """What compaction leaves of a log: each key's newest record, in log order, tombstones gone."""
    newest = {key: at for at, (key, _) in enumerate(log)}
    return [(key, value) for at, (key, value) in enumerate(log) if newest[key] == at and value is not None]


@given(populations, st.integers(min_value=1, max_value=5_000), st.integers(0, 7))
@settings(max_examples=150, deadline=None)
def test_a_share_reads_back_as_published_whatever_the_chunk_size(population: Population, chunk: int,
                                                                   partition: int) -> None:
    records = share_records(partition, population, (), max_chunk=chunk)
    assert all(len(value or b"") <= chunk + 200 for _, value in records)  # a chunk and its header line
    shares = _read(ShareReader(), records)
    assert len(shares) == 1
    assert shares[0][0] == partition
    assert shares[0][1].to_json() == population.to_json()


@given(st.lists(st.tuples(st.integers(0, 2), populations, st.integers(min_value=20, max_value=3_000)),
                min_size=1, max_size=8))
@settings(max_examples=100, deadline=None)
def test_a_new_reader_of_the_compacted_topic_finds_each_partitions_newest_share(
        publications: list[tuple[int, Population, int]]) -> None:
    # Every worker reads the topic as it is written, and tombstones what its publication leaves stale.
    follower, log = ShareReader(), []
    newest: dict[int, Population] = {}
    for partition, population, chunk in publications:
        records = share_records(partition, population, follower.live(partition), max_chunk=chunk)
        log += records
        _read(follower, records)
        newest[partition] = population
    for view in (log, _compacted(log)):
        found = {partition: population.to_json() for partition, population in _read(ShareReader(), view)}
        assert found == {partition: population.to_json() for partition, population in newest.items()}


def test_a_share_of_the_first_format_is_read_and_its_key_retired_by_the_next_publication() -> None:
    old = Population(days={19_000: 2}, orders={1: 2}, monetary={5: 2}, size=2)
    reader = ShareReader()
    partition, population = reader.add(legacy_key(1), json.dumps({"partition": 1, "population": old.to_json()})
                                       .encode()) or (None, None)
    assert partition == 1 and population is not None and population.to_json() == old.to_json()
    records = share_records(1, Population(size=0), reader.live(1), max_chunk=1_000)
    assert (legacy_key(1), None) in records


def test_a_publication_cut_short_never_completes_and_stale_ones_are_not_kept() -> None:
    reader = ShareReader()
    big = Population(purchases={(n % 30 + 1, 18_000 + n, 18_500 + n): 1 for n in range(3_000)}, size=3_000)
    for _ in range(PENDING_SHARES + 3):
        records = share_records(0, big, (), max_chunk=1_000)
        assert len(records) > 2
        assert _read(reader, records[:-1]) == []  # the producer stopped before the last chunk
    assert len(reader.pending[0]) == PENDING_SHARES
    assert _read(reader, share_records(0, big, (), max_chunk=1_000))[0][1].to_json() == big.to_json()


def test_chunks_of_two_publications_interleaved_each_complete() -> None:
    # During a rebalance the old and the new owner of a partition may publish at the same time.
    first, second = Population(size=1, days={19_000: 1}), Population(size=2, days={19_001: 2})
    a, b = share_records(3, first, (), max_chunk=30), share_records(3, second, (), max_chunk=30)
    mixed = [record for pair in zip(a, b, strict=False) for record in pair]
    mixed += a[len(b):] + b[len(a):]
    sizes = [population.size for _, population in _read(ShareReader(), mixed)]
    assert sorted(sizes) == [1, 2]


def test_a_record_of_an_unknown_format_is_refused() -> None:
    header = {"format": 9, "partition": 0, "share": "x", "chunk": 0, "chunks": 1}
    with pytest.raises(ValueError, match="unknown format 9"):
        ShareReader().add(b"p0/0", json.dumps(header).encode() + b"\n" + bytes(random.Random(1).randbytes(8)))
