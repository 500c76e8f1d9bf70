"""The worker's table keys: the bytes Faust's json codec (standard-library json) has always
written, whatever else is installed, and the codec the app's tables, stores and changelogs use."""

from __future__ import annotations

import json
from pathlib import Path

from faust.serializers import codecs
from hypothesis import given
from hypothesis import strategies as st

from agents.table_keys import TABLE_KEYS
from stream.settings import load_settings


@given(st.text(max_size=130))
def test_a_key_is_stored_as_faust_always_stored_it(key: str) -> None:
    stored = TABLE_KEYS.dumps(key)
    assert stored == json.dumps(key).encode()  # what faust's json codec writes without orjson
    assert stored.isascii()
    assert TABLE_KEYS.loads(stored) == key


def test_faust_json_codec_agrees_here() -> None:
    # Faust's own codec, in this environment (no orjson): the same bytes for every kind of id
    for key in ("c42", "café", "客户-7", 'quote"back\\slash', "tab\tnew\nline", "\x00"):
        assert TABLE_KEYS.dumps(key) == codecs.dumps("json", key)


def test_the_worker_tables_use_it_for_store_and_changelog(tmp_path: Path) -> None:
    from agents.app import create_app

    pulse = create_app(load_settings(data_dir=tmp_path))
    for name, table in pulse.tables.items():
        assert table.key_serializer is TABLE_KEYS, name
        assert table.changelog_topic.key_serializer is TABLE_KEYS, name
        assert table.data.key_serializer is TABLE_KEYS, name
        assert table.data._encode_key("café") == b'"caf\\u00e9"', name
