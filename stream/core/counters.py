"""Processing counters (received, accepted, rejected by reason, duplicates, late, cross-sell
counts, ...).

Each partition's agent owns the key ``*@{partition}`` of a changelog-backed table: a JSON
object of the partition's counts, rewritten once per batch that counted anything. That is one
changelog record per partition and batch, where a key per counter made one per counter that
moved (in the small batches of a worker at half load, about two records per event). Keys
``{name}@{partition}`` holding a decimal count were written by versions before 2026-12-04, one per
counter; they are read and added to the object's counts, and never written again. Counts
survive restarts, no two workers ever write one key, and readers sum the partitions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, MutableMapping

PARTITION_COUNTS = "*"  # the name part of a partition's key


def partition_key(partition: int) -> str:
    return f"{PARTITION_COUNTS}@{partition}"


def add(table: MutableMapping[str, bytes], partition: int, counts: Mapping[str, int]) -> None:
    """Add a batch's counts to the partition's (assigning a new value, never mutating in place).

    >>> t: dict[str, bytes] = {}
    >>> add(t, 2, {"ingest.accepted": 1}); add(t, 2, {"ingest.accepted": 2, "ingest.received": 3})
    >>> t
    {'*@2': b'{"ingest.accepted":3,"ingest.received":3}'}
    """
    key = partition_key(partition)
    stored = table.get(key)
    merged: dict[str, int] = json.loads(stored) if stored else {}
    for name, by in counts.items():
        merged[name] = merged.get(name, 0) + by
    table[key] = json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()


def entries(items: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, str, int]]:
    """(name, partition, count) of every count in a counters table's items, in either form (a
    name can come twice for a partition: an old key's count and the object's).

    >>> list(entries([("*@0", b'{"a":2,"b":1}'), ("a@0", b"5")]))
    [('a', '0', 2), ('b', '0', 1), ('a', '0', 5)]
    """
    for key, value in items:
        name, _, partition = key.rpartition("@")
        if value[:1] == b"{":
            for counted, count in json.loads(value).items():
                yield counted, partition, int(count)
        else:
            yield name, partition, int(value)


def by_partition(items: Iterable[tuple[str, bytes]]) -> dict[tuple[str, str], int]:
    """Each (name, partition)'s count.

    >>> by_partition([("*@0", b'{"a":2}'), ("a@0", b"5"), ("a@1", b"1")])
    {('a', '0'): 7, ('a', '1'): 1}
    """
    result: dict[tuple[str, str], int] = {}
    for name, partition, count in entries(items):
        result[name, partition] = result.get((name, partition), 0) + count
    return result


def partition_counts(table: Mapping[str, bytes], partition: int) -> dict[str, int]:
    """One partition's counts, by name.

    >>> partition_counts({"*@0": b'{"a":2}', "b@0": b"1", "*@1": b'{"a":9}'}, 0)
    {'a': 2, 'b': 1}
    """
    wanted = str(partition)
    return dict(sorted((name, count) for (name, at), count in by_partition(table.items()).items() if at == wanted))


def totals(items: Iterable[tuple[str, bytes]]) -> dict[str, int]:
    """Sum counters over partitions.

    >>> totals([("*@0", b'{"a":2}'), ("a@1", b"3"), ("b@0", b"1")])
    {'a': 5, 'b': 1}
    """
    result: dict[str, int] = {}
    for name, _, count in entries(items):
        result[name] = result.get(name, 0) + count
    return dict(sorted(result.items()))
