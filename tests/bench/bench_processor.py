"""The worker's domain work alone: :class:`stream.core.processor.Processor` over dicts as tables,
plus the encoding of its output records (``stream/sinks/outputs.py``), with no Kafka, Faust or
Redis. The same sample stream and configuration as ``pulse bench`` (population scoring, 4
partitions, raw events validated by the processor), so the figure is the ceiling the domain
logic puts on one worker.

    .venv/bin/python -m tests.bench.bench_processor --events 20000 --customers 2000
    .venv/bin/python -m tests.bench.bench_processor --profile 30   # top functions by own time
    .venv/bin/python -m tests.bench.bench_processor --batch 10     # batches as small as at low load
    .venv/bin/python -m tests.bench.bench_processor --no-purchase-model
    PULSE_BACKLOG_RESCORE_SECONDS=10 .venv/bin/python -m tests.bench.bench_processor  # backfill pace

A worker refits the population's purchase model every 30 s, and from then on every profile
and churn assessment carries its outlook; so by default the run uses a model fitted over the
same stream first (an unmeasured pass), as a worker has from its first half minute.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from datetime import UTC, datetime
from typing import Any

from stream.cli.bench import recent_events
from stream.core.churn import ChurnConfig
from stream.core.owner import owner_partition
from stream.core.population import PopulationBook
from stream.core.processor import Processor
from stream.core.purchase import FitError
from stream.core.purchase_outlook import PurchaseModel, fit_population
from stream.core.rfm import MONETARY_RESOLUTION
from stream.core.rules import Rules, load_rules
from stream.core.work import Effects, Record, Tables
from stream.io.produce import event_records
from stream.settings import Settings
from stream.sinks.outputs import batch_outputs

PARTITIONS = 4
BATCH = 1000


def _records(events: int, customers: int) -> list[Record]:
    """The bench's sample stream (moved to end a minute ago), as raw records of its partitions."""
    records, offsets = [], [0] * PARTITIONS
    for key, value in event_records(recent_events(customers, events, "bench", datetime.now(UTC))):
        partition = owner_partition((key or b"").decode(), PARTITIONS)
        records.append(Record(partition, key, value, "raw", offsets[partition]))
        offsets[partition] += 1
    return records


def _encode(processor: Processor, effects: Effects, partition: int) -> int:
    """What the agent encodes per batch (``stream/sinks/outputs.py``): bytes out."""
    return sum(len(output.value) for output in batch_outputs(effects, processor.profile, partition, PARTITIONS))


def _processor(settings: Settings, rules: Rules) -> tuple[Processor, Tables, PopulationBook]:
    tables = Tables(state={}, counters={}, maxima={}, index={}, erasures={}, identities={})
    book = PopulationBook(PARTITIONS, tables.state, tables.index, mode=rules.scoring.mode, counters=tables.counters)
    processor = Processor(rules=rules, policy=settings.dedup_policy(), churn=ChurnConfig(),
                          population=book if rules.scoring.mode == "population" else None,
                          rescore_seconds=settings.rescore_seconds,
                          backlog_rescore_seconds=settings.backlog_rescore_seconds, raw_topic="raw",
                          validation=settings.validation_rules())
    return processor, tables, book


def _fitted_purchase_model(settings: Settings, rules: Rules, records: list[Record]) -> PurchaseModel | None:
    """The purchase model a worker fits over the population of ``records`` (every 30 s); None,
    as in a worker, when the model does not fit this population."""
    processor, tables, book = _processor(settings, rules)
    for partition in range(PARTITIONS):
        processor.process([r for r in records if r.partition == partition], tables)
    merged = book.merged()
    try:
        return fit_population(dict(merged.purchases), dict(merged.spend), MONETARY_RESOLUTION,
                              float(settings.churn_horizon_days))
    except FitError as exc:
        print(f"bench_processor: running without a purchase model, as a worker would: {exc}", file=sys.stderr)
        return None


def setup(events: int, customers: int, scoring: str | None = None, purchase_model: bool = True
          ) -> tuple[Settings, Rules, list[Record], PurchaseModel | None]:
    """The stream and what the measured run starts with (not measured)."""
    settings = Settings()
    rules = load_rules() if scoring is None else load_rules().with_scoring_mode(scoring)
    records = _records(events, customers)
    model = _fitted_purchase_model(settings, rules, records) \
        if purchase_model and rules.scoring.mode == "population" else None
    return settings, rules, records, model


def run(settings: Settings, rules: Rules, records: list[Record], model: PurchaseModel | None,
        batch_size: int = BATCH) -> dict[str, Any]:
    customers = len({record.key for record in records})
    processor, tables, book = _processor(settings, rules)
    book.purchase = model
    started = time.perf_counter()
    process = encode = 0.0
    out = tag_changes = 0
    for at in range(0, len(records), batch_size):
        batch = records[at:at + batch_size]
        for partition in sorted({record.partition for record in batch}):
            t0 = time.perf_counter()
            # every batch but the last is part of a backlog, as in a worker started on the stream
            behind = () if at + batch_size >= len(records) else (partition,)
            effects = processor.process([r for r in batch if r.partition == partition], tables, behind)
            t1 = time.perf_counter()
            out += _encode(processor, effects, partition)
            encode += time.perf_counter() - t1
            process += t1 - t0
            tag_changes += len(effects.tag_changes)
    seconds = time.perf_counter() - started
    return {"events": len(records), "customers": customers, "scoring": rules.scoring.mode, "batch": batch_size,
            "purchase_model": model is not None,
            "seconds": round(seconds, 3),
            "events_per_s": round(len(records) / seconds), "us_per_event": round(seconds / len(records) * 1e6, 1),
            "process_us_per_event": round(process / len(records) * 1e6, 1),
            "encode_us_per_event": round(encode / len(records) * 1e6, 1),
            "tag_changes": tag_changes, "output_bytes": out,
            "state_bytes_per_customer": round(sum(map(len, tables.state.values())) / max(1, len(tables.state)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--scoring", choices=("population", "fixed"),
                        help="RFM scoring mode [default: the packaged rules']")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"records per batch [default: {BATCH}]")
    parser.add_argument("--no-purchase-model", dest="purchase_model", action="store_false",
                        help="run without a fitted purchase model (a worker's first half minute)")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="profile the run and print the N top functions by own time")
    args = parser.parse_args()
    inputs = setup(args.events, args.customers, args.scoring, args.purchase_model)
    if args.profile:
        profiler = cProfile.Profile()
        result = profiler.runcall(run, *inputs, args.batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
    else:
        result = run(*inputs, args.batch)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
