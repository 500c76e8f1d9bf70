"""Benchmark of the validation stage (bytes -> event or rejection), without I/O.

    .venv/bin/python -m tests.bench.bench_validate [--events 50000] [--repeat 5]

Prints events per second for valid events, for a realistic mix with 5% malformed records,
and for the full ingest step (validate + re-encode for the customer-events topic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from schemas import EVENT_ADAPTER
from stream.core.validate import Rejection, validate
from stream.io.sample import sample_events

BAD = [b'{"type": "purchase", "event_id": ', b"\xff\xfe", b'{"type": "teleport"}',
       b'{"type": "purchase", "event_id": "x", "customer_id": "c", "event_time": "2024-01-01T00:00:00Z",'
       b' "order_id": "o", "total": -1}']


def _rate(records: list[bytes], step: Callable[[bytes], object], repeat: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for raw in records:
            step(raw)
        rates.append(len(records) / (time.perf_counter() - start))
    return statistics.median(rates), min(rates)


def _ingest(raw: bytes) -> object:
    result = validate(raw)
    if isinstance(result, Rejection):
        return result
    return EVENT_ADAPTER.dump_json(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    valid = [json.dumps(e).encode() for e in sample_events(2_000, args.events, seed=1)]
    mixed = [BAD[i % len(BAD)] if i % 20 == 0 else raw for i, raw in enumerate(valid)]
    print(f"validation benchmark: {args.events} records, median (worst) of {args.repeat} runs, one core")
    for label, records, step in (("valid events", valid, validate), ("5% malformed", mixed, validate),
                                 ("validate + re-encode", mixed, _ingest)):
        median, worst = _rate(records, step, args.repeat)
        print(f"  {label:<22} {median:>10,.0f} events/s   ({worst:,.0f} worst)")


if __name__ == "__main__":
    main()
