"""Processing counters (received, accepted, rejected by reason, duplicates, late).

Each partition's agent owns the keys ``{name}@{partition}`` of a changelog-backed table, so
counts survive restarts and no two workers ever write one key; readers sum the partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping


def counter_key(name: str, partition: int) -> str:
    return f"{name}@{partition}"


def bump(table: MutableMapping[str, bytes], name: str, partition: int, by: int = 1) -> None:
    """Increment one counter (assigning a new value, never mutating in place).

    >>> t: dict[str, bytes] = {}
    >>> bump(t, "ingest.accepted", 2); bump(t, "ingest.accepted", 2)
    >>> t
    {'ingest.accepted@2': b'2'}
    """
    key = counter_key(name, partition)
    table[key] = str(int(table.get(key) or b"0") + by).encode()


def totals(items: Iterable[tuple[str, bytes]]) -> dict[str, int]:
    """Sum counters over partitions.

    >>> totals([("a@0", b"2"), ("a@1", b"3"), ("b@0", b"1")])
    {'a': 5, 'b': 1}
    """
    result: dict[str, int] = {}
    for key, value in items:
        name = key.rsplit("@", 1)[0]
        result[name] = result.get(name, 0) + int(value)
    return dict(sorted(result.items()))
