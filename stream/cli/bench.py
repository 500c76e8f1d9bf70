"""``pulse bench``: throughput and latency of the whole pipeline against the configured Kafka
and Redis, in a topic prefix, consumer group and Redis database of its own.

One run measures: the raw consume + JSON decode rate of the input topic (the upper bound),
the pipeline's events/s from worker start to caught up (Redis written and offsets committed),
their ratio, event→Redis latency p50/p99 at a fixed offered load of half the measured rate
(produce time to the hash's ``written_at``), worker RSS, and state bytes per customer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stream.cli.base import Progress, free_port
from stream.infra.topics import delete_app_topics
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.connect import KafkaAccess, redacted
from stream.io.produce import event_records, produce
from stream.io.sample import sample_events
from stream.settings import Settings
from stream.topology import processing_groups

WAIT_TIMEOUT_SECONDS = 1800.0
LATENCY_SECONDS = 10.0
SOAK_SAMPLE_SECONDS = 30.0
# the line a worker logs at the end of an event-loop stall (agents/stall_watch.py)
STALL_LINE = re.compile(r"^\[([0-9-]+ [0-9:,]+)\] .*event loop: held for (\d+(?:\.\d+)?) s \(", re.MULTILINE)
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"
STALL_SECONDS = 0.1  # the workers' PULSE_LOOP_STALL_SECONDS: stalls as long as the p99 aimed at


@dataclass
class BenchResult:
    events: int
    customers: int
    workers: int
    partitions: int
    raw_events_per_s: float = 0.0
    pipeline_events_per_s: float = 0.0
    pipeline_seconds: float = 0.0
    offered_events_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    # the workers' CPU time (user + system) from their start-up (web view answering) to caught up,
    # per event: what the events cost, less sensitive than events/s to what else the machine does
    cpu_ms_per_event: float = 0.0
    state_bytes_per_customer: float = 0.0
    # the event-loop stalls of STALL_SECONDS or longer the workers logged during the latency probes, in seconds
    loop_stalls: list[float] = field(default_factory=list)
    soak: Soak | None = None

    @property
    def ratio(self) -> float:
        return self.pipeline_events_per_s / self.raw_events_per_s if self.raw_events_per_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 4)}

    def lines(self) -> list[str]:
        latency = self.latency_ms
        return [
            f"pulse bench: {self.events} events, {self.customers} customers, {self.workers} worker(s), "
            f"{self.partitions} partitions",
            f"  raw consume + decode     {self.raw_events_per_s:>12,.0f} events/s   (upper bound)",
            f"  pipeline                 {self.pipeline_events_per_s:>12,.0f} events/s   "
            f"({self.pipeline_seconds:.1f} s from worker start to caught up)",
            f"  pipeline / raw           {self.ratio:>12.4f}",
            f"  latency at {self.offered_events_per_s:,.0f} events/s   p50 {latency.get('p50', math.nan):,.0f} ms   "
            f"p99 {latency.get('p99', math.nan):,.0f} ms   ({latency.get('count', 0):.0f} events)",
            f"  worker CPU               {self.cpu_ms_per_event:>12.2f} ms per event (from start-up to caught up)",
            f"  worker RSS               {', '.join(f'{mb:,.0f} MB' for mb in self.rss_mb)}",
            f"  state per customer       {self.state_bytes_per_customer:>12,.0f} bytes (JSON in the table)",
            f"  event-loop stalls        {len(self.loop_stalls):>12} of {STALL_SECONDS:g} s or more during the probes"
            + (f" (longest {max(self.loop_stalls):.2f} s)" if self.loop_stalls else ""),
            *(self.soak.lines() if self.soak is not None else ()),
        ]


@dataclass
class Soak:
    """Worker RSS over a stretch of steady load: ``samples`` are (seconds into the soak, MB)
    of the first worker."""

    seconds: float
    events_per_s: float
    events: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)
    caught_up_seconds: float = 0.0  # after the last event was sent

    def change(self) -> float:
        """The last sample against the first one after the warm-up (the first sixth of the soak),
        as a fraction.

        >>> round(Soak(600, 100, samples=[(0, 100.0), (100, 200.0), (300, 210.0), (600, 220.0)]).change(), 3)
        0.1
        """
        settled = self.settled()
        return settled[-1] / settled[0] - 1 if len(settled) >= 2 else math.nan

    def settled(self) -> list[float]:
        """The RSS samples after the warm-up (the first sixth of the soak)."""
        return [mb for at, mb in self.samples if at >= self.seconds / 6]

    def lines(self) -> list[str]:
        peak = max((mb for _, mb in self.samples), default=math.nan)
        settled = self.settled()
        first = settled[0] if settled else math.nan
        last = settled[-1] if settled else math.nan
        return [f"  soak {self.seconds:,.0f} s at {self.events_per_s:,.0f} events/s ({self.events:,} events): "
                f"worker RSS {first:,.0f} MB after warm-up, {last:,.0f} MB at the end ({self.change():+.1%}), "
                f"peak {peak:,.0f} MB; caught up {self.caught_up_seconds:.1f} s after the last event"]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max by the nearest-rank method.

    >>> percentiles([float(v) for v in range(1, 101)])
    {'p50': 50.0, 'p99': 99.0, 'max': 100.0, 'count': 100.0}
    >>> percentiles([])
    {}
    """
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1], "count": float(len(ordered))}


def recent_events(customers: int, events: int, prefix: str, now: datetime) -> list[dict[str, Any]]:
    """The sample stream, moved in time so that its newest event is a minute old (events from
    the future are rejected, and the latency probes that follow must be the newest)."""
    sample = sample_events(customers, events, seed=5, prefix=prefix)
    shift = now - timedelta(minutes=1) - datetime.fromisoformat(sample[-1]["event_time"])
    for event in sample:
        event["event_time"] = (datetime.fromisoformat(event["event_time"]) + shift).isoformat()
    return sample


def probe(customer_id: str, index: int, prefix: str, now: datetime) -> dict[str, Any]:
    """One latency probe: a page view of a known customer, stamped now."""
    return {"type": "page_view", "event_id": f"{prefix}-probe-{index}", "customer_id": customer_id,
            "event_time": now.isoformat(), "url": "/bench"}


def latencies_ms(sent_at: dict[str, float], written_at: dict[str, str | None]) -> list[float]:
    """Produce time (epoch s) to the hash's ``written_at`` (epoch ms), per probed customer.

    >>> latencies_ms({"a": 10.0, "b": 11.0}, {"a": "10050", "b": None})
    [50.0]
    """
    return [int(written) - sent_at[cid] * 1000 for cid, written in written_at.items() if written is not None]


def process_tree(pid: int) -> list[int]:
    """The process and its descendants now (a worker runs its population fits in a child)."""
    found, at = [pid], 0
    while at < len(found):
        for children in Path(f"/proc/{found[at]}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the thread or process ended meanwhile
                found += [int(child) for child in children.read_text().split()]
        at += 1
    return found


def _tree_files(pid: int, name: str) -> Iterator[str]:
    """``/proc/{member}/{name}`` of the process and each live descendant."""
    for member in process_tree(pid):
        with contextlib.suppress(OSError):  # the process ended meanwhile
            yield Path(f"/proc/{member}/{name}").read_text()


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, user and system, with its live descendants' (``/proc/{pid}/stat``)."""
    total = 0.0
    for stat in _tree_files(pid, "stat"):
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def rss_mb(pid: int) -> float:
    """A process's resident memory, with its live descendants'."""
    return sum(next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)
               for status in _tree_files(pid, "status"))


async def raw_consume_rate(kafka: KafkaAccess, topic: str, expected: int) -> float:
    """Events/s of a bare aiokafka consumer reading the topic from the start and decoding each value."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, **kafka.options(), auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        seen, started = 0, time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                seen += sum(len(records) for records in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class Bench:
    """One benchmark run; everything it creates is named ``bench-<id>`` and removed afterwards."""

    def __init__(self, settings: Settings, redis_db: int, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench-{self.tag}."
        self.app_id = f"bench-{self.tag}"
        self.redis_url = settings.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
        self.workers: list[WorkerProcess] = []
        self.probed = (0.0, 0.0)  # when the latency probes were sent and processed (epoch seconds)
        # the workers' customer view (read back at the end) needs a token, the same for every
        # worker: a worker asked for a customer another holds forwards the request with it
        self.api_tokens = settings.api_tokens or f"bench-{uuid.uuid4().hex}"

    def env(self, port: int) -> dict[str, str]:
        return worker_env({"PULSE_TOPIC_PREFIX": self.prefix, "PULSE_APP_ID": self.app_id,
                           "PULSE_DATA_DIR": str(self.data_dir), "PULSE_WEB_PORT": str(port),
                           "PULSE_REDIS_URL": self.redis_url, "PULSE_LOG_LEVEL": "warning",
                           "PULSE_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
                           "PULSE_PARTITIONS": str(self.settings.partitions),
                           "PULSE_API_TOKENS": self.api_tokens, "PULSE_LOOP_STALL_SECONDS": str(STALL_SECONDS)})

    @staticmethod
    def workers_cpu(workers: list[WorkerProcess]) -> float:
        return sum(cpu_seconds(worker.proc.pid) for worker in workers if worker.proc)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def groups(self) -> dict[str, list[str]]:
        """Caught up on these means processed and written to Redis (the sink commits after writing)."""
        return processing_groups(Settings(topic_prefix=self.prefix, app_id=self.app_id))

    def run(self, events: int, customers: int, workers: int, soak_seconds: float = 0.0,
            soak_rate: float | None = None) -> BenchResult:
        from stream.io.replay import wait_until_processed

        kafka = self.settings.kafka
        result = BenchResult(events=events, customers=customers, workers=workers,
                             partitions=self.settings.partitions)
        stream = recent_events(customers, events, self.prefix.rstrip("."), datetime.now(UTC))
        self.say(f"producing {events:,} events for {customers:,} customers to {self.topic('events')} ...")
        asyncio.run(produce(kafka, self.topic("events"), event_records(stream)))
        result.raw_events_per_s = asyncio.run(raw_consume_rate(kafka, self.topic("events"), events))
        self.say(f"raw consume + decode: {result.raw_events_per_s:,.0f} events/s")

        started = time.perf_counter()
        started_cpu = 0.0
        for _ in range(workers):
            port = free_port()
            self.workers.append(WorkerProcess(self.env(port), self.data_dir / f"worker-{port}.log", port).start())
            started_cpu += self.workers_cpu(self.workers[-1:])
        progress = Progress(self.say, "pipeline")
        behind = asyncio.run(wait_until_processed(kafka, self.groups(), WAIT_TIMEOUT_SECONDS,
                                                  progress=progress.lag))
        if behind:
            raise BenchError(f"the workers did not catch up in {WAIT_TIMEOUT_SECONDS:.0f}s: {behind}; "
                             f"see the logs in {self.data_dir}")
        # to the first poll that found every group caught up (and still so after the settling
        # wait, which is not counted)
        result.pipeline_seconds = (progress.caught_up_at or time.perf_counter()) - started
        result.cpu_ms_per_event = 1000 * (self.workers_cpu(self.workers) - started_cpu) / events
        result.pipeline_events_per_s = events / result.pipeline_seconds
        progress.done(f"{result.pipeline_events_per_s:,.0f} events/s")

        result.offered_events_per_s, result.latency_ms = self.latency(
            sorted({e["customer_id"] for e in stream}), result.pipeline_events_per_s / 2)
        result.rss_mb = [round(rss_mb(worker.proc.pid), 1) for worker in self.workers if worker.proc]
        result.state_bytes_per_customer = self.state_bytes(sorted({e["customer_id"] for e in stream})[:200])
        if soak_seconds:
            result.soak = self.soak(customers, soak_rate or result.pipeline_events_per_s / 2, soak_seconds)
        result.loop_stalls = self.loop_stalls(*self.probed)
        return result

    def loop_stalls(self, since: float, until: float) -> list[float]:
        """The stalls the workers logged (agents/stall_watch.py) that ended between ``since``
        and ``until`` (epoch seconds), in seconds."""
        found = []
        for log in sorted(self.data_dir.glob("worker-*.log")):
            for logged_at, held in STALL_LINE.findall(log.read_text(errors="replace")):
                ended = datetime.strptime(logged_at, LOG_TIME).timestamp()  # (the worker logs local time)
                if since <= ended <= until:
                    found.append(float(held))
        return found

    def keep_logs(self, into: Path) -> list[Path]:
        """Copy the workers' logs into ``into`` (before :meth:`clean_up` removes them)."""
        into.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy(log, into / log.name)) for log in sorted(self.data_dir.glob("worker-*.log"))]

    def soak(self, customers: int, rate: float, seconds: float) -> Soak:
        """Events of the bench's customers, stamped now, at ``rate`` for ``seconds``, sampling the
        first worker's RSS every SOAK_SAMPLE_SECONDS; then until the workers caught up."""
        from stream.io.replay import wait_until_processed

        self.say(f"soak: {seconds:,.0f} s at {rate:,.0f} events/s ...")
        soak = Soak(seconds=seconds, events_per_s=rate)
        asyncio.run(self._send_steady(customers, soak))
        started = time.perf_counter()
        behind = asyncio.run(wait_until_processed(self.settings.kafka, self.groups(), WAIT_TIMEOUT_SECONDS))
        if behind:
            raise BenchError(f"the workers did not catch up after the soak in {WAIT_TIMEOUT_SECONDS:.0f}s: {behind}")
        soak.caught_up_seconds = time.perf_counter() - started
        return soak

    async def _send_steady(self, customers: int, soak: Soak) -> None:
        from aiokafka import AIOKafkaProducer

        worker = self.workers[0].proc
        assert worker is not None
        # the same customers as the run (same id prefix), new event ids (another seed)
        stream = sample_events(customers, int(soak.events_per_s * soak.seconds) + 1, seed=6,
                               prefix=self.prefix.rstrip("."))
        producer = AIOKafkaProducer(**self.settings.kafka.options(), acks="all", linger_ms=5)
        await producer.start()
        try:
            started = time.perf_counter()
            next_sample = started
            for index, event in enumerate(stream):
                at = index / soak.events_per_s
                if at >= soak.seconds:
                    break
                delay = started + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.perf_counter() >= next_sample:
                    elapsed = time.perf_counter() - started
                    soak.samples.append((round(elapsed, 1), round(rss_mb(worker.pid), 1)))
                    self.say(f"  soak {elapsed:,.0f}/{soak.seconds:,.0f} s: {index:,} events sent, "
                             f"worker RSS {soak.samples[-1][1]:,.0f} MB")
                    next_sample += SOAK_SAMPLE_SECONDS
                event["event_time"] = datetime.now(UTC).isoformat()
                await producer.send(self.topic("events"), json.dumps(event).encode(),
                                    key=event["customer_id"].encode())
                soak.events = index + 1
            await producer.flush()
        finally:
            await producer.stop()
        soak.samples.append((round(time.perf_counter() - started, 1), round(rss_mb(worker.pid), 1)))

    def latency(self, customer_ids: list[str], rate: float) -> tuple[float, dict[str, float]]:
        """Probe events at ``rate`` per second, one per customer, for up to LATENCY_SECONDS."""
        from stream.io.replay import wait_until_processed

        count = max(1, min(len(customer_ids), int(rate * LATENCY_SECONDS)))
        self.say(f"latency: {count} probe events at {rate:,.0f} events/s ...")
        started = time.time()
        sent_at = asyncio.run(self._send_probes(customer_ids[:count], rate))
        asyncio.run(wait_until_processed(self.settings.kafka, self.groups(),
                                         WAIT_TIMEOUT_SECONDS))
        self.probed = (started, time.time())
        import redis

        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        pipe = client.pipeline(transaction=False)
        for cid in sent_at:
            pipe.hget(f"pulse:cust:{cid}", "written_at")
        written = dict(zip(sent_at, pipe.execute(), strict=True))
        client.close()
        return rate, percentiles(latencies_ms(sent_at, written))

    async def _send_probes(self, customer_ids: list[str], rate: float) -> dict[str, float]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**self.settings.kafka.options(), acks="all", linger_ms=0)
        await producer.start()
        sent_at: dict[str, float] = {}
        try:
            started = time.perf_counter()
            for index, cid in enumerate(customer_ids):
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at[cid] = time.time()
                event = probe(cid, index, self.prefix.rstrip("."), datetime.now(UTC))
                await producer.send(self.topic("events"), json.dumps(event).encode(), key=cid.encode())
            await producer.flush()
        finally:
            await producer.stop()
        return sent_at

    def state_bytes(self, customer_ids: list[str]) -> float:
        states = (self.workers[0].get(f"/customers/{cid}/") for cid in customer_ids)
        sizes = [len(json.dumps(state)) for state in states if state is not None]  # None: being rebalanced
        return sum(sizes) / len(sizes) if sizes else 0.0

    def check_redis_db_empty(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            if client.dbsize():
                raise BenchError(f"Redis database {redacted(self.redis_url)} is not empty; the benchmark writes "
                                 "there and empties it afterwards: choose an unused one with --redis-db")
        finally:
            client.close()

    def clean_up(self) -> None:
        """Stop the workers, delete the run's topics and Redis keys, remove its data directory."""
        import redis

        for worker in self.workers:
            worker.stop()
        asyncio.run(delete_app_topics(self.settings.kafka, (self.prefix, f"{self.app_id}-")))
        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class BenchError(RuntimeError):
    """The benchmark could not run or finish; the message says why."""
