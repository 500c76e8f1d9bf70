"""The key codec of the worker's tables: a key is stored (in RocksDB and in the changelog) as a
JSON string with non-ASCII characters escaped, ``"c42"`` or ``"caf\\u00e9"``.

Those are the bytes Faust's ``json`` codec has always written for a ``str`` key with the
standard library's json, so nothing stored before needs migrating. Two reasons not to leave the
key to that codec:

- Faust's ``json`` codec switches to orjson whenever orjson happens to be importable, and
  orjson writes non-ASCII characters unescaped: installing it beside the worker (FastAPI
  extras pull it in) would make every stored customer whose id is not ASCII unreachable under
  its old key. This codec does not depend on what else is installed.
- It is cheaper: Faust's codec builds a JSON encoder for every key it encodes, and the worker
  encodes one key per table read and two per write (store and changelog), about a twentieth
  of its time under a backlog (docs/performance.md, "Table keys").
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

from faust.serializers.codecs import Codec


class TableKeys(Codec):
    """A ``str`` key as an ASCII JSON string; any other key as JSON (what Faust's codec writes).

    >>> keys = TableKeys()
    >>> keys.dumps("café"), keys.loads(b'"caf\\\\u00e9"')
    (b'"caf\\\\u00e9"', 'café')
    """

    def _dumps(self, key: Any) -> bytes:
        if type(key) is str:
            return encode_basestring_ascii(key).encode()
        return json.dumps(key, separators=(",", ":")).encode()

    def _loads(self, data: bytes) -> Any:
        return json.loads(data)


TABLE_KEYS = TableKeys()


def use_table_keys(table: Any) -> None:
    """Make ``table`` encode its keys with :data:`TABLE_KEYS`: in its store (which takes the table's
    codec when it opens, so call this before), and in its changelog records."""
    table.key_serializer = table.changelog_topic.key_serializer = TABLE_KEYS
