"""Faust tables read with one RocksDB lookup.

A Faust table's ``get`` asks its store whether the key is there and then for its value: two
lookups, two key encodings and two reads of the current event per read, and a sensor call. The
processor reads every customer's state, sweep-index bucket and cursor once per batch, so
:class:`OneLookup` reads through the store once (its own ``_get``, which picks the partition's
RocksDB by the current event exactly as the table does). Writes, deletes and iteration go
through the table unchanged, so every write still makes its changelog record.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any


class OneLookup(MutableMapping[str, bytes]):
    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str, default: Any = None) -> Any:
        store = self.table.data
        raw = store._get(store._encode_key(key))
        return default if raw is None else store._decode_value(raw)

    def __getitem__(self, key: str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
