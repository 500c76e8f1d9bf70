"""Faust tables read with one RocksDB lookup.

A Faust table's ``get`` asks its store whether the key is there and then for its value: two
lookups, two key encodings and two reads of the current event per read, and a sensor call. The
processor reads every customer's state, sweep-index bucket and cursor once per batch, so
:class:`OneLookup` reads from the table's store (``table.data[key]``: one lookup, in the
partition's RocksDB that the current event picks, exactly as the table does; ``get`` and ``in``
are the mapping's own, through it). Writes, deletes and iteration go through the table
unchanged, so every write still makes its changelog record.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any


class OneLookup(MutableMapping[str, bytes]):
    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> bytes:
        return self.table.data[key]  # type: ignore[no-any-return]  # the store: one lookup

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
