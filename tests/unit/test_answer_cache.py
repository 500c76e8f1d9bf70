"""The lookup clients' held batch answers (:class:`stream.api.lookup.AnswerCache`), without
Redis: whatever the writes, erasures and lookups in between, an answer served as held is the
answer a fresh read would give, and the cache stays within its bound. (The batch script itself
runs against a real Redis in tests/integration/test_api.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.api.lookup import AnswerCache, Held, batch_json, to_lookup
from stream.sinks.base import ReadModels

NOW = datetime(2024, 2, 1, tzinfo=UTC)
MODELS = ReadModels()


def _hash(customer_id: str, version: int, written: int) -> dict[str, str]:
    return {"customer_id": customer_id, "version": str(version), "event_version": str(version),
            "computed_at": (NOW - timedelta(seconds=written)).isoformat(), "as_of_event_time": "",
            "orders": str(version), "segment": f"s{version}", "stamp": f"{version}:{version}:{written}"}


def _script(store: dict[str, dict[str, str]], ids: list[str], held: list[Held | None]) -> list[Any]:
    """What the batch script answers (no field subset): 1 for the stamp held, else the hash's fields."""
    replies: list[Any] = []
    for cid, entry in zip(ids, held, strict=True):
        stored = store.get(cid, {})
        if entry is not None and entry.stamp and stored.get("stamp") == entry.stamp:
            replies.append(1)
        else:
            replies.append([item for pair in stored.items() for item in pair])
    return replies


ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 2)),
    st.tuples(st.just("erase"), st.integers(0, 2)),
    st.tuples(st.just("read"), st.lists(st.integers(0, 3), min_size=1, max_size=4))), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops=ops, entries=st.integers(0, 4))
def test_held_answers_are_what_a_fresh_read_gives_and_stay_within_the_bound(
        ops: list[tuple[str, Any]], entries: int) -> None:
    cache = AnswerCache(entries)
    store: dict[str, dict[str, str]] = {}
    writes = 0
    for op, arg in ops:
        if op == "write":
            writes += 1
            cid = f"c{arg}"
            version = int(store[cid]["version"]) + 1 if cid in store else 1
            store[cid] = _hash(cid, version, writes)
        elif op == "erase":
            store.pop(f"c{arg}", None)
        else:
            ids = [f"c{n}" for n in arg]
            held = cache.held(ids, None, MODELS)
            resolved = cache.resolve(ids, ids, held, _script(store, ids, held), None, NOW, None, MODELS)
            for cid, entry in resolved:
                fresh = to_lookup(cid, store[cid], None, NOW, None) if cid in store else None
                assert (entry.lookup(cid, NOW, None) if entry is not None else None) == fresh
            assert len(cache) <= entries
            assert len(cache) == sum(cache.held([f"c{n}"], None, MODELS)[0] is not None for n in range(4))


def test_a_held_answer_encodes_as_the_route_would() -> None:
    cache = AnswerCache()
    stored = _hash('é "q"', 3, 1)
    ids = ['é "q"', "nobody"]
    resolved = cache.resolve(ids, ids, [None, None], [[x for p in stored.items() for x in p], []], None, NOW,
                             30.0, MODELS)
    for max_age, at in ((30.0, NOW), (0.5, NOW + timedelta(seconds=0.25)), (None, NOW + timedelta(days=3))):
        answer = resolved[0][1]
        assert answer is not None
        want = ('{"customers":{' + '"é \\"q\\"":' + answer.lookup('é "q"', at, max_age).model_dump_json()
                + '},"missing":["nobody"]}').encode()
        assert batch_json(resolved, at, max_age) == want
