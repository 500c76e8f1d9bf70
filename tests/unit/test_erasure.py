"""Erasure in the processor (stream/core/erasure.py), with dicts as tables: the state, its sweep
entry and its population share go, later events are suppressed without their payload, and
fresh analytics consent lets a customer back in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas.deadletter import DeadLetter
from stream.core.churn import ChurnConfig
from stream.core.counters import partition_counts
from stream.core.dedup import DedupPolicy
from stream.core.erasure import ERASE_KEY, ErasureRequest, ErasureRequestError, subject_digest
from stream.core.population import PopulationBook
from stream.core.processor import Processor
from stream.core.rules import load_rules
from stream.core.sweep import decode_members
from stream.core.work import Record, Tables
from stream.io.sample import sample_events

POLICY = DedupPolicy(lateness=timedelta(days=3), horizon=timedelta(days=30), max_ids=256)
ERASED_AT = datetime(2030, 1, 1, tzinfo=UTC)


def _setup() -> tuple[Processor, Tables, PopulationBook]:
    tables = Tables(state={}, counters={}, maxima={}, index={}, erasures={})
    book = PopulationBook(1, tables.state, tables.index)
    processor = Processor(rules=load_rules(), policy=POLICY, churn=ChurnConfig(), population=book,
                          clock=lambda: ERASED_AT)
    return processor, tables, book


def _records(events: list[dict]) -> list[Record]:
    return [Record(0, str(e["customer_id"]).encode(), json.dumps(e).encode(), "t", i) for i, e in enumerate(events)]


def _erase(customer_id: str) -> Record:
    return Record(0, ERASE_KEY, ErasureRequest("r1", customer_id, ERASED_AT).to_bytes(), "t", 999)


def _purchase(customer_id: str, event_id: str, consent: dict | None = None) -> dict:
    event = {"type": "purchase", "event_id": event_id, "customer_id": customer_id, "order_id": event_id,
             "total": "20.00", "event_time": (ERASED_AT + timedelta(days=1)).isoformat()}
    return {**event, "consent": consent} if consent is not None else event


def test_erasure_removes_state_sweep_entry_and_population_share_and_leaves_others() -> None:
    processor, tables, book = _setup()
    events = sample_events(6, 300, seed=5, prefix="e")
    processor.process(_records(events), tables)
    victim = next(e["customer_id"] for e in events if e["type"] == "purchase")
    others = {cid: raw for cid, raw in tables.state.items() if cid != victim}
    assert victim in tables.state
    size_before = book.index(0).population.size

    effects = processor.process([_erase(victim)], tables)

    assert victim not in tables.state
    assert not any(victim in decode_members(raw) for raw in tables.index.values() if raw.startswith(b"["))
    assert victim not in set().union(*book.index(0).members["orders"].values())
    assert book.index(0).population.size == size_before - 1
    assert {cid: tables.state[cid] for cid in others} == others  # nobody else touched
    assert [e.customer_id for e in effects.erasures] == [victim]
    assert effects.erasures[0].had_state and effects.erasures[0].tables_cleared_at == ERASED_AT.isoformat()
    assert victim not in effects.profiles
    assert tables.erasures == {subject_digest(victim): tables.erasures[subject_digest(victim)]}
    assert victim.encode() not in b"".join(tables.erasures.values())  # the marker holds no id


def test_an_erased_customers_later_events_are_suppressed_without_payload() -> None:
    processor, tables, _ = _setup()
    processor.process(_records([_purchase("c1", "a")]), tables)
    processor.process([_erase("c1")], tables)

    effects = processor.process(_records([_purchase("c1", "b"), _purchase("c2", "c")]), tables)

    assert "c1" not in tables.state and "c2" in tables.state
    assert set(effects.profiles) == {"c2"}
    [(key, raw)] = effects.dead_letters
    letter = DeadLetter.model_validate_json(raw)
    assert (letter.reason, letter.original_b64, letter.original_key_b64, key) == ("erased", "", None, None)
    assert partition_counts(tables.counters, 0)["profile.suppressed"] == 1


def test_fresh_analytics_consent_after_the_erasure_lets_the_customer_back_in() -> None:
    processor, tables, _ = _setup()
    processor.process([_erase("c1")], tables)
    processor.process(_records([_purchase("c1", "a", {"analytics": False})]), tables)
    assert "c1" not in tables.state

    effects = processor.process(_records([_purchase("c1", "b", {"analytics": True})]), tables)

    assert "c1" in tables.state and set(effects.profiles) == {"c1"}
    assert not tables.erasures  # the suppression is lifted
    assert partition_counts(tables.counters, 0)["privacy.resumed"] == 1


def test_an_erasure_drops_what_the_same_batch_would_still_publish_about_the_customer() -> None:
    processor, tables, _ = _setup()
    effects = processor.process([*_records([_purchase("c1", "a"), _purchase("c2", "b")]), _erase("c1")], tables)
    assert set(effects.profiles) == {"c2"}
    assert {change.customer_id for change in effects.tag_changes} == {"c2"}
    assert "c1" not in tables.state


def test_a_malformed_erasure_request_is_dead_lettered_with_the_reason() -> None:
    processor, tables, _ = _setup()
    effects = processor.process([Record(0, ERASE_KEY, b'{"customer_id": "c1"}', "t", 3)], tables)
    [(_, raw)] = effects.dead_letters
    assert "not an erasure request" in DeadLetter.model_validate_json(raw).message
    with pytest.raises(ErasureRequestError, match="empty"):
        ErasureRequest.new("  ", ERASED_AT)


def test_withdrawn_analytics_consent_erases_the_profile_and_keeps_only_counts() -> None:
    processor, tables, _ = _setup()
    processor.process(_records([_purchase("c1", "a"), _purchase("c2", "b", {"analytics": False})]), tables)
    assert "c1" in tables.state and "c2" not in tables.state  # never profiled without consent

    effects = processor.process(_records([_purchase("c1", "c", {"analytics": False, "marketing": True})]), tables)

    assert "c1" not in tables.state and not effects.profiles
    assert [(e.customer_id, e.request_id) for e in effects.erasures] == [("c1", "consent-c")]
    assert not effects.dead_letters  # a withdrawal is not an error
    counts = partition_counts(tables.counters, 0)
    assert counts["privacy.no_consent"] == 2 and counts["privacy.erased"] == 1
    processor.process(_records([_purchase("c1", "d")]), tables)  # later events: suppressed
    assert "c1" not in tables.state
