"""The batched processor, driven directly with dicts as tables (no Kafka, no Faust)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerState
from schemas.deadletter import DeadLetter
from stream.core.batch import batch_raw_rfm
from stream.core.churn import ChurnConfig
from stream.core.counters import partition_counts
from stream.core.dedup import DedupPolicy
from stream.core.erasure import ERASE_KEY, ErasureRequest
from stream.core.processor import Processor
from stream.core.rules import load_rules
from stream.core.sweep import TICK_KEY
from stream.core.work import Effects, Record, Tables
from stream.io.sample import sample_events
from stream.sinks import MemorySink

POLICY = DedupPolicy(lateness=timedelta(days=3), horizon=timedelta(days=30), max_ids=256)
FIXED_NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _processor() -> Processor:
    return Processor(rules=load_rules().with_scoring_mode("fixed"), policy=POLICY, churn=ChurnConfig(),
                     clock=lambda: FIXED_NOW)


def _tables() -> Tables:
    return Tables(state={}, counters={}, maxima={}, index={})


def _records(events: list[dict], partition: int = 0) -> list[Record]:
    return [Record(partition, str(e["customer_id"]).encode(), json.dumps(e).encode(), "t", offset)
            for offset, e in enumerate(events)]


def _state(tables: Tables, customer_id: str) -> CustomerState:
    return CustomerState.model_validate_json(tables.state[customer_id])


def test_a_batch_folds_each_customer_and_publishes_the_newest_profile_once() -> None:
    events = sample_events(5, 200, seed=3, prefix="p")
    tables = _tables()
    effects = _processor().process(_records(events), tables)

    for customer_id, want in batch_raw_rfm(events).items():
        state = _state(tables, customer_id)
        assert state.orders == want.orders
        assert Decimal(state.monetary_cents) / 100 == want.monetary
        assert effects.profiles[customer_id] == state  # the batch's newest state, once
    assert set(effects.profiles) == {e["customer_id"] for e in events}
    assert partition_counts(tables.counters, 0)["profile.applied"] == len(events)
    assert list(tables.counters) == ["*@0"]  # one counter record per partition and batch
    assert effects.tag_changes, "first purchases tag customers"
    assert not effects.dead_letters


def test_bad_records_are_dead_lettered_with_the_reason_and_the_rest_is_processed() -> None:
    base = {"type": "purchase", "customer_id": "c1", "order_id": "o", "total": "10.00"}
    newest = {**base, "event_id": "e1", "event_time": "2024-03-10T00:00:00+00:00"}
    late = {**base, "event_id": "e2", "event_time": "2024-03-01T00:00:00+00:00"}  # 9 days older
    records = [*_records([newest, newest, late]), Record(0, b"c2", b"{not json", "t", 9)]
    tables = _tables()
    effects = _processor().process(records, tables)

    letters = [DeadLetter.model_validate_json(raw) for _, raw in effects.dead_letters]
    assert [(letter.reason, letter.source_offset) for letter in letters] == [("too_late", 2),
                                                                          ("processing_error", 9)]
    assert "more than 3 days" in letters[0].message
    state = _state(tables, "c1")
    assert (state.orders, state.duplicates, state.too_late) == (1, 1, 1)
    assert partition_counts(tables.counters, 0) == {"profile.applied": 1, "profile.duplicate": 1, "profile.too_late": 1,
                                                    "profile.failed": 1,
                                                    "affinity.orders:*": 1}  # the applied purchase, for cross-sell


def test_a_sweep_tick_moves_silent_customers_on_without_an_event() -> None:
    purchase = {"type": "purchase", "event_id": "e1", "customer_id": "c1", "order_id": "o", "total": "50.00",
                "event_time": "2024-01-01T00:00:00+00:00"}
    tables, processor = _tables(), _processor()
    processor.process(_records([purchase]), tables)
    before = _state(tables, "c1")
    assert before.next_boundary_at is not None

    tick = json.dumps({"now": (before.next_boundary_at + timedelta(days=400)).isoformat()}).encode()
    effects = processor.process([Record(0, TICK_KEY, tick, "t", 1)], tables)
    after = _state(tables, "c1")
    assert after.revision > before.revision
    assert {change.reason for change in effects.tag_changes} == {"time"}
    assert effects.profiles["c1"] == after
    assert partition_counts(tables.counters, 0)["sweeper.visited"] == 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 119), max_size=8, unique=True))
def test_any_batching_gives_the_result_of_one_record_at_a_time(seed: int, cuts: list[int]) -> None:
    events = sample_events(6, 120, seed=seed, prefix="b")
    events += events[:10]  # redeliveries
    records = _records(events)
    boundaries = [0, *sorted(cuts), len(records)]

    def run(batches: list[list[Record]]) -> tuple[Tables, Effects]:
        tables, processor, published = _tables(), _processor(), Effects()
        for batch in batches:
            effects = processor.process(batch, tables)
            published.profiles.update(effects.profiles)  # a later batch's profiles replace earlier ones
            published.tag_changes += effects.tag_changes
            published.alerts += effects.alerts
            published.labels += effects.labels
            published.dead_letters += effects.dead_letters
        return tables, published

    one_by_one = run([[record] for record in records])
    batched = run([records[a:b] for a, b in zip(boundaries, boundaries[1:], strict=False) if b > a])
    assert batched[0] == one_by_one[0]
    assert batched[1] == one_by_one[1]


def test_raw_events_are_validated_and_those_of_another_partition_forwarded() -> None:
    processor = Processor(rules=load_rules().with_scoring_mode("fixed"), policy=POLICY, churn=ChurnConfig(),
                          clock=lambda: FIXED_NOW, raw_topic="raw", owns=lambda cid, partition: cid != "away")
    here = {"type": "page_view", "event_id": "e1", "customer_id": "c1", "event_time": "2024-01-01T00:00:00Z"}
    away = {**here, "event_id": "e2", "customer_id": "away"}
    future = {**here, "event_id": "e3", "event_time": "2031-01-01T00:00:00Z"}
    records = [Record(2, b"k", json.dumps(e).encode(), "raw", i) for i, e in enumerate((here, away, future))]
    records.append(Record(2, b"k", b"\xff", "raw", 3))
    tables = _tables()
    effects = processor.process(records, tables)

    assert _state(tables, "c1").events == 1 and "away" not in tables.state
    assert [(key, json.loads(value)["event_id"]) for _, key, value in effects.forwards] == [(b"away", "e2")]
    letters = [DeadLetter.model_validate_json(raw) for _, raw in effects.dead_letters]
    assert [(letter.reason, letter.stage, letter.source_offset) for letter in letters] == [
        ("future_event_time", "validate", 2), ("not_utf8", "validate", 3)]
    assert list(tables.counters) == ["*@2"] and partition_counts(tables.counters, 2) == {
        "ingest.received": 4, "ingest.accepted": 2, "profile.applied": 1, "ingest.rejected.future_event_time": 1,
        "ingest.rejected.not_utf8": 1}
    # the dead-letter rate's counts: every record received, the rejected ones on the day the
    # partition's event time had reached (the future one is not believed)
    day = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() // 86_400)
    assert effects.activity == {day: {"records": 4.0, "dead_letters": 2.0, "active_customers": 1.0}}
    assert effects.newest_event_time == datetime(2024, 1, 1, tzinfo=UTC)  # only applied events move it


def test_a_session_that_fills_a_cart_counts_once_in_the_cart_to_checkout_funnel() -> None:
    t = datetime(2024, 1, 1, 10, tzinfo=UTC)

    def event(n: int, kind: str, session: str, **fields: object) -> dict:
        return {"type": kind, "event_id": f"e{n}", "customer_id": "c1", "session_id": session,
                "event_time": (t + timedelta(minutes=n)).isoformat(), **fields}

    item = {"sku": "s1", "category": "books", "quantity": 1, "unit_price": "5.00"}
    events = [event(1, "page_view", "s1"), event(2, "add_to_cart", "s1", **item),
              event(3, "product_view", "s1", sku="s2", category="books"), event(4, "add_to_cart", "s1", **item),
              event(5, "checkout_start", "s1", cart_value="10.00"),
              event(6, "add_to_cart", "s2", **item), event(7, "add_to_cart", "s2", **item)]
    effects = _processor().process(_records(events), _tables())

    day = int(t.timestamp() // 86_400)
    counts = effects.activity[day]
    assert (counts["sessions"], counts["carts"], counts["checkouts"]) == (2.0, 2.0, 1.0)


def test_a_redelivered_batch_publishes_its_profiles_again() -> None:
    """The worker stopped after a batch's state was stored but before its Redis writes were:
    the redelivered records are duplicates, and the profiles are published again all the same."""
    events = sample_events(5, 60, seed=4, prefix="r")
    tables, processor = _tables(), _processor()
    first = processor.process(_records(events), tables)  # its effects are lost
    again = processor.process(_records(events), tables)

    assert set(again.profiles) == set(first.profiles) == {e["customer_id"] for e in events}
    for customer_id, state in again.profiles.items():
        assert (state.events, state.orders, state.monetary_cents) == (
            first.profiles[customer_id].events, first.profiles[customer_id].orders,
            first.profiles[customer_id].monetary_cents)
    assert not again.tag_changes and not again.alerts  # nothing new happened


def _snapshot(tables: Tables) -> dict[str, dict[str, bytes]]:
    return {name: dict(getattr(tables, name)) for name in
            ("state", "counters", "maxima", "index", "erasures", "identities")}


def test_a_prepared_batch_writes_no_table_until_it_is_stored() -> None:
    """The agent stores a batch's table writes only after its outputs are acknowledged; until
    then the tables (state, counters, maxima, sweep index, suppression markers) are untouched."""
    events = sample_events(20, 400, seed=1, prefix="s")
    tables, processor = _tables(), _processor()
    processor.process(_records(events[:200]), tables)
    before = _snapshot(tables)
    erased = events[0]["customer_id"]
    records = [*_records(events[200:]), Record(0, ERASE_KEY, ErasureRequest("r1", erased, FIXED_NOW).to_bytes(),
                                               "t", 999)]

    prepared = processor.prepare(records, tables)
    assert _snapshot(tables) == before
    assert prepared.effects.erasures and prepared.effects.tag_changes

    prepared.store()
    after = _snapshot(tables)
    stored_at_once = _tables()
    _processor().process(_records(events[:200]), stored_at_once)
    _processor().process(records, stored_at_once)
    assert after == _snapshot(stored_at_once)
    assert erased not in after["state"] and after["erasures"]  # the erasure's marker, stored with the rest


def test_a_batch_whose_outputs_were_lost_before_its_state_was_stored_raises_them_again() -> None:
    """The worker stopped after sending some of a batch's outputs but before storing its state:
    the redelivered records are not duplicates, and every tag change and alert comes again,
    alerts with the same ``alert_id`` (so a consumer can recognise the repeat)."""
    events = sample_events(20, 400, seed=2, prefix="l")
    tables = _tables()
    lost = _processor().prepare(_records(events), tables)  # never stored
    again = _processor().process(_records(events), tables)

    assert lost.effects.alerts, "the sample raises inactivity alerts"
    assert [a.alert_id for a in again.alerts] == [a.alert_id for a in lost.effects.alerts]
    assert again.tag_changes == lost.effects.tag_changes
    assert again.profiles == lost.effects.profiles


def test_a_lost_batch_redone_with_fewer_time_driven_changes_still_reaches_the_sink() -> None:
    """The worker wrote a batch's profiles to Redis and stopped before storing its state. The redo
    of the batch had no sweep tick in it (ticks come on another topic, so they fall into other
    batches), and its revisions are lower than those of the lost writes: the sink must still
    end with the newest state, not keep the lost one."""
    def purchase(event_id: str, day: int) -> dict:
        return {"type": "purchase", "event_id": event_id, "customer_id": "c1", "order_id": event_id,
                "total": "20.00", "event_time": (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day)).isoformat()}

    tables, sink, processor = _tables(), MemorySink(), _processor()

    def write(effects: Effects) -> None:
        asyncio.run(sink.write_profiles([processor.profile(state) for state in effects.profiles.values()]))

    write(processor.process(_records([purchase("e1", 0)]), tables))
    tick = json.dumps({"now": datetime(2025, 6, 1, tzinfo=UTC).isoformat()}).encode()
    lost = processor.prepare([*_records([purchase("e2", 10)]), Record(0, TICK_KEY, tick, "t", 9)], tables)
    write(lost.effects)  # never stored
    write(_processor().process(_records([purchase("e2", 10)]), tables))  # the redo, without the tick
    assert lost.effects.profiles["c1"].revision > _state(tables, "c1").revision  # the lost writes are "newer"
    write(_processor().process(_records([purchase("e3", 20)]), tables))

    state, row = _state(tables, "c1"), asyncio.run(sink.read_profile("c1"))
    assert row is not None
    assert (row["orders"], row["version"], row["event_version"]) == (str(state.orders), str(state.revision), "3")


def test_a_partition_behind_rescores_at_the_backlog_pace_and_caught_up_at_the_usual_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from stream.core import population
    from stream.core.population import PopulationBook

    clock = [1000.0]
    monkeypatch.setattr(population.time, "monotonic", lambda: clock[0])
    tables = Tables(state={}, counters={}, maxima={}, index={})
    book = PopulationBook(1, tables.state, tables.index, counters=tables.counters)
    processor = Processor(rules=load_rules(), policy=POLICY, churn=ChurnConfig(), clock=lambda: FIXED_NOW,
                          population=book, rescore_seconds=1.0, backlog_rescore_seconds=10.0)
    events = sample_events(40, 400, seed=11, prefix="r")
    batches = iter([events[at:at + 20] for at in range(0, len(events), 20)])

    def batch_at(seconds: float, behind: bool) -> bool:
        """Process the next batch ``seconds`` after the first; whether the partition rescored."""
        clock[0] = 1000.0 + seconds
        before = book.last_rescore.get(0)
        processor.process(_records(next(batches)), tables, behind=(0,) if behind else ())
        return book.last_rescore.get(0) != before

    assert batch_at(0, behind=True)  # never rescored: due at once
    assert not batch_at(2, behind=True)  # behind: not before 10 s
    assert not batch_at(9, behind=True)
    assert batch_at(10.5, behind=True)
    assert batch_at(12, behind=False)  # caught up: 1 s is enough
    assert not batch_at(12.5, behind=False)
    assert batch_at(13.5, behind=False)
    assert not batch_at(15, behind=True)  # behind again: 10 s from the last rescore
    assert batch_at(24, behind=True)

    def tick_at(seconds: float, behind: bool) -> bool:
        """A sweep tick ``seconds`` after the first batch; whether the partition rescored."""
        clock[0] = 1000.0 + seconds
        before = book.last_rescore.get(0)
        tick = json.dumps({"now": FIXED_NOW.isoformat()}).encode()
        processor.process([Record(0, TICK_KEY, tick, "t", 0)], tables, behind=(0,) if behind else ())
        return book.last_rescore.get(0) != before

    assert not tick_at(30, behind=True)  # ticks keep the backlog's pace too: 10 s from the rescore at 24
    assert not tick_at(33, behind=True)
    assert tick_at(34.5, behind=True)
    assert tick_at(35.7, behind=False)  # a quiet, caught-up partition follows the cuts at the usual pace
