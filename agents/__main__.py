"""Run one worker: ``python -m agents`` (what ``pulse worker`` starts)."""

from __future__ import annotations

import asyncio
import gc
import sys

from faust.worker import Worker

from agents.app import create_app
from agents.diagnostics import log_task_stacks
from stream.core.rules import RulesError
from stream.infra.topics import ensure_topics
from stream.io.connect import ConnectionSetupError, check_kafka, check_redis
from stream.settings import SettingsError, load_settings

# A worker allocates many short-lived objects per event (pydantic models, dicts, tuples). With
# Python's default thresholds (700, 10, 10) its collector ran ~3,000 times during
# `pulse bench --events 20000 --customers 2000`: 5 s of collections, pauses up to 150 ms that
# land on whichever batch is running. These collect the young generation every 50,000 net
# allocations instead (docs/performance.md has the measurements).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Keep what is loaded by now (modules, the app, the rules) out of every later collection,
    and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def use_event_loop(name: str) -> None:
    """Make the loops created from now on (the worker's, and its Kafka consumer thread's) of
    this kind (``PULSE_EVENT_LOOP``)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # not installed on this platform (Windows)
            print("pulse worker: PULSE_EVENT_LOOP=uvloop, but uvloop is not installed here; "
                  "set PULSE_EVENT_LOOP=asyncio", file=sys.stderr)
            raise SystemExit(2) from None
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())


class PulseWorker(Worker):
    def _on_sigusr1(self) -> None:
        # `kill -USR1 <pid>`: what every asyncio task awaits (see agents/diagnostics.py)
        log_task_stacks(self.app)


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"pulse worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:  # bad credentials or an untrusted certificate: stop now, naming the setting
        asyncio.run(check_kafka(settings.kafka))
        check_redis(settings.redis_url)
    except ConnectionSetupError as exc:
        print(f"pulse worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    created = asyncio.run(ensure_topics(settings))
    if created:
        print(f"pulse worker: created topics {', '.join(created)}", file=sys.stderr)
    use_event_loop(settings.event_loop)
    try:
        pulse = create_app(settings)
    except RulesError as exc:
        print(f"pulse worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    worker = PulseWorker(pulse.app, loglevel=settings.log_level.upper())
    # faust's terminal spinner sets the root logger to DEBUG (to spin on every record),
    # which made every produced message build a debug log record: ~10% of a worker's CPU.
    worker.spinner = None
    tune_collector()
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
