"""Pseudonymous keys in the processor: raw events are stored, scored and published under the
customer's pseudonym only, with exactly the state the raw id would have had."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from aiokafka.partitioner import DefaultPartitioner

from schemas import CustomerState
from stream.core.churn import ChurnConfig
from stream.core.dedup import DedupPolicy
from stream.core.processor import Processor
from stream.core.pseudonym import pseudonym
from stream.core.rules import load_rules
from stream.core.work import Effects, Record, Tables
from stream.io.sample import sample_events
from stream.settings import Settings

KEY = "pseudonym-key-0123456789"
POLICY = DedupPolicy(lateness=timedelta(days=3), horizon=timedelta(days=30), max_ids=256)
PARTITIONS = [0, 1, 2, 3]
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _owner(customer_id: str) -> int:
    return int(DefaultPartitioner()(customer_id.encode(), PARTITIONS, PARTITIONS))


def _run(pseudonymize: bool) -> tuple[Tables, list[Effects]]:
    """Raw events keyed by customer id, as producers send them; forwarded records processed on."""
    processor = Processor(rules=load_rules().with_scoring_mode("fixed"), policy=POLICY, churn=ChurnConfig(),
                          clock=lambda: NOW, raw_topic="raw", owns=lambda cid, partition: _owner(cid) == partition,
                          pseudonymize=(lambda cid: pseudonym(KEY, cid)) if pseudonymize else None)
    tables = Tables(state={}, counters={}, maxima={}, index={}, erasures={})
    events = sample_events(8, 200, seed=4, prefix="raw-id")
    records = [Record(_owner(e["customer_id"]), e["customer_id"].encode(), json.dumps(e).encode(), "raw", i)
               for i, e in enumerate(events)]
    outputs = []
    for partition in PARTITIONS:
        outputs.append(processor.process([r for r in records if r.partition == partition], tables))
    forwarded = [Record(_owner(key.decode()), key, value, "customer-events", i)
                 for i, (_, key, value) in enumerate(f for effects in outputs for f in effects.forwards)]
    for partition in PARTITIONS:
        outputs.append(processor.process([r for r in forwarded if r.partition == partition], tables))
    return tables, outputs


def test_no_raw_id_is_stored_or_published_and_the_state_is_the_same() -> None:
    plain, _ = _run(pseudonymize=False)
    hidden, outputs = _run(pseudonymize=True)
    assert set(hidden.state) == {pseudonym(KEY, cid) for cid in plain.state}
    everything = repr([dict(t) for t in (hidden.state, hidden.index, hidden.counters, hidden.maxima)]) + repr(
        [(e.profiles, e.tag_changes, e.alerts, e.labels, e.forwards) for e in outputs])
    leaked = [raw_id for raw_id in plain.state if raw_id in everything]
    assert not leaked, f"raw customer ids stored or published: {leaked}"
    for raw_id, raw_state in plain.state.items():
        mine = CustomerState.model_validate_json(hidden.state[pseudonym(KEY, raw_id)])
        theirs = CustomerState.model_validate_json(raw_state)
        assert (mine.orders, mine.monetary_cents, mine.events, mine.tags.segment) == \
            (theirs.orders, theirs.monetary_cents, theirs.events, theirs.tags.segment)


def test_readers_map_a_raw_id_to_what_is_stored() -> None:
    assert Settings(pseudonym_key=KEY).stored_id("c42") == pseudonym(KEY, "c42") != "c42"
    assert Settings().stored_id("c42") == "c42"
