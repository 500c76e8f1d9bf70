"""``pulse bench --lookups``: lookup latency of ``pulse serve`` and of the direct client.

Fills an empty Redis database with synthetic profiles through the real sink, and publishes a
purchase model and a churn learner (so every answer is scored as of now), starts ``pulse
serve`` as its own process, offers single-customer GETs and then 100-id batches at a fixed
rate (open loop: a request's latency counts from when it was due, so a slow answer cannot
hide the ones queued behind it), then times the direct client in this process. The
database is emptied afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from schemas import CustomerState, Profile
from stream.api.lookup import LookupClient
from stream.cli.base import api_answers, free_port
from stream.cli.bench import BenchError, percentiles
from stream.core.churn import ChurnConfig
from stream.core.churn_now import stored_inputs
from stream.core.purchase import BgNbd, GammaGamma
from stream.core.purchase_outlook import PurchaseModel
from stream.io.connect import redacted
from stream.model.params import ModelParams, served_record, transform
from stream.sinks import RedisSink
from stream.sinks.redis import CHURN_MODEL_KEY, PURCHASE_MODEL_KEY

BATCH = 100


@dataclass
class LookupBenchResult:
    profiles: int
    rate: float
    seconds: float
    workers: int = 1
    batch_rate: float = 50.0
    single_ms: dict[str, float] = field(default_factory=dict)
    cold_batch_ms: dict[str, float] = field(default_factory=dict)
    batch_ms: dict[str, float] = field(default_factory=dict)
    direct_ms: dict[str, float] = field(default_factory=dict)
    direct_batch_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    held: dict[str, float] = field(default_factory=dict)  # batch answers held and read (one server process's)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        def row(name: str, figures: dict[str, float]) -> str:
            return (f"  {name:<34} p50 {figures.get('p50', float('nan')):7.2f} ms   "
                    f"p99 {figures.get('p99', float('nan')):7.2f} ms   max {figures.get('max', float('nan')):7.2f} ms"
                    f"   ({figures.get('count', 0):,.0f})")

        return [f"pulse bench --lookups: {self.profiles:,} profiles in Redis, pulse serve with {self.workers} "
                f"process(es), {self.seconds:.0f} s per kind, {self.errors} failed requests",
                row(f"GET /v1/customers/{{id}} at {self.rate:,.0f}/s", self.single_ms),
                row(f"POST batch of {BATCH}, none held", self.cold_batch_ms),
                row(f"POST batch of {BATCH} at {self.batch_rate:,.0f}/s", self.batch_ms),
                f"  batch answers held / read from Redis (a server process's /metrics): "
                f"{self.held.get('held', 0):,.0f} / {self.held.get('read', 0):,.0f}",
                row("direct client get()", self.direct_ms),
                row(f"direct client get_many({BATCH})", self.direct_batch_ms)]


def synthetic_profiles(count: int, seed: int = 3) -> list[Profile]:
    """Profiles as the workers write them, with the inputs a reader scores as of now from
    (purchase days, churn features at the last purchase)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    config = ChurnConfig()
    segments = ["Champions", "Loyal", "Potential Loyalist", "At Risk", "Hibernating", "Lost"]
    profiles = []
    for i in range(count):
        last = now - timedelta(days=rng.randint(0, 300))
        first = last - timedelta(days=rng.randint(0, 700))
        orders = rng.randint(1, 30)
        days = rng.randint(1, orders)
        state = CustomerState(customer_id=f"lk{i:07d}", version=orders, events=orders * 4, orders=orders,
                              monetary_cents=rng.randint(500, 300_000), first_purchase_at=first, last_purchase_at=last,
                              first_seen_at=first, last_event_at=last, purchase_days=days, active_days=days * 2)
        profiles.append(Profile(
            customer_id=state.customer_id, version=rng.randint(1, 50), events=state.events,
            orders=orders, purchase_days=days, monetary=f"{state.monetary_cents / 100:.2f}",
            first_purchase_at=first, last_purchase_at=last,
            r=rng.randint(1, 5), f=rng.randint(1, 5), m=rng.randint(1, 5), segment=rng.choice(segments),
            value_tier=rng.choice(["diamond", "gold", "silver", "bronze"]), lifecycle="mature", behaviour="regular",
            top_categories="books,garden", channel="web", as_of_event_time=last, computed_at=now,
            rules_version="bench", model_version="logreg-1", churn_probability=round(rng.random(), 4),
            churn_risk=rng.choice(["low", "medium", "high"]), churn_reasons='["silent for 2 usual gaps"]',
            churn_as_of=last, churn_inputs=stored_inputs(state, last, config)))
    return profiles


def published_models(as_of: datetime) -> dict[str, str]:
    """A purchase model and a ready churn learner as the workers publish them, so that every
    answer is scored as of now, as in production (the figures are a fit's, the cost the same)."""
    purchase = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44),
                             int(as_of.timestamp() // 86_400), 10_000, 4_000, mean_value=40.0)
    names = list(transform(json.loads(synthetic_profiles(1)[0].churn_inputs or "{}")))
    learner = ModelParams(version=1, ready=True, means=dict.fromkeys(names, 0.0), variances=dict.fromkeys(names, 1.0),
                          weights=dict.fromkeys(names, 0.1), intercept=-1.0, labels_seen=10_000, river_version="bench")
    return {PURCHASE_MODEL_KEY: json.dumps({**purchase.to_json(), "horizon_days": 90}),
            CHURN_MODEL_KEY: json.dumps(served_record(learner, ChurnConfig()))}


async def _fill(url: str, profiles: list[Profile]) -> None:
    sink = RedisSink.from_url(url)
    try:
        for start in range(0, len(profiles), 1000):
            await sink.write_profiles(profiles[start:start + 1000])
    finally:
        await sink.close()


class _Connection:
    """One keep-alive HTTP/1.1 connection. The load generator speaks HTTP itself: on a 2-core
    machine an HTTP client library costs the generator more CPU than the server it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return int(head[9:12])


async def _offer(port: int, rate: float, seconds: float, make: Callable[[], bytes],
                 connections: int = 32, warm_up: bool = True) -> tuple[list[float], int]:
    """Send ``rate`` requests per second for ``seconds``; latencies (ms) from when each was due.
    ``rate`` 0: ``seconds`` requests, each sent when a connection is free (closed loop)."""
    latencies: list[float] = []
    errors = 0
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(_Connection(*await asyncio.open_connection("127.0.0.1", port)))

    async def one(due: float, raw: bytes | None = None) -> None:
        nonlocal errors
        connection = await pool.get()
        try:
            if await asyncio.wait_for(connection.request(raw or make()), 5.0) != 200:
                errors += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            errors += 1
            connection.writer.close()
            connection = _Connection(*await asyncio.open_connection("127.0.0.1", port))
        finally:
            pool.put_nowait(connection)
        latencies.append((time.perf_counter() - due) * 1000)

    for _ in range(2 * connections if warm_up else 0):
        await one(time.perf_counter())
    latencies.clear()
    errors = 0
    tasks = []
    start = time.perf_counter()
    if not rate:
        async def serially(count: int) -> None:
            for _ in range(count):
                await one(time.perf_counter())

        share, extra = divmod(int(seconds), connections)
        await asyncio.gather(*(serially(share + (n < extra)) for n in range(connections)))
    prepared = [make() for _ in range(int(rate * seconds))]  # not on the generator's clock
    start = time.perf_counter()
    for n, raw in enumerate(prepared):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, raw)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().writer.close()
    return latencies, errors


def _held_answers(base: str) -> dict[str, float]:
    """Batch answers served as held and read from Redis, from ``/metrics`` (the process that answered)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}
    return {"held": found.get("pulse_api_batch_answers_held_total", 0.0),
            "read": found.get("pulse_api_batch_answers_read_total", 0.0)}


def _time_direct(client: LookupClient, ids: list[str], rounds: int, batch: int) -> list[float]:
    rng = random.Random(5)
    times = []
    for _ in range(rounds):
        chosen = rng.sample(ids, batch)
        started = time.perf_counter()
        if batch == 1:
            client.get(chosen[0])
        else:
            client.get_many(chosen)
        times.append((time.perf_counter() - started) * 1000)
    return times


def run_lookup_bench(redis_url: str, profiles: int, rate: float, seconds: float, workers: int = 1,
                     batch_rate: float = 50.0, say: Callable[[str], None] = print) -> LookupBenchResult:
    if redis.Redis.from_url(redis_url).dbsize():
        raise BenchError(f"Redis database {redacted(redis_url)} is not empty; the benchmark writes there and empties "
                         "it afterwards: choose an unused one with --redis-db")
    result = LookupBenchResult(profiles=profiles, rate=rate, seconds=seconds, workers=workers, batch_rate=batch_rate)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped benchmark still empties its database
    token, port = secrets.token_urlsafe(24), free_port()
    server: subprocess.Popen[bytes] | None = None
    try:
        say(f"  writing {profiles:,} profiles to {redacted(redis_url)}")
        made = synthetic_profiles(profiles)
        asyncio.run(_fill(redis_url, made))
        redis.Redis.from_url(redis_url).mset(published_models(datetime.now(UTC)))
        ids = [p.customer_id for p in made]
        del made
        # the load generator's own pauses must not count as the server's: what is alive now is
        # kept out of the collector's scans (a full collection over it stalls every request in flight)
        gc.collect()
        gc.freeze()
        env = {**os.environ, "PULSE_REDIS_URL": redis_url, "PULSE_API_TOKENS": token}
        server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port), "--no-kafka",
                                   "--workers", str(workers)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        failed = api_answers(server, base)
        if failed:
            exited = server.poll() is not None and server.stderr is not None
            err = server.stderr.read().decode(errors="replace").strip() if exited and server.stderr else ""
            raise BenchError(f"{failed}: {err}" if err else failed)
        rng = random.Random(7)

        auth = f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"

        def single() -> bytes:
            return f"GET /v1/customers/{rng.choice(ids)} HTTP/1.1\r\n{auth}\r\n".encode()

        def batch(chosen: list[str] | None = None) -> bytes:
            body = json.dumps({"ids": chosen or rng.sample(ids, BATCH)}).encode()
            return (f"POST /v1/customers:batch HTTP/1.1\r\n{auth}Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        def every_id() -> Callable[[], bytes]:
            order = iter([ids[at:at + BATCH] for at in range(0, len(ids), BATCH)] * workers)
            return lambda: batch(next(order))

        for name, request, key, offered in (("single GETs", single, "single_ms", rate),
                                            (f"{BATCH}-id batches", batch, "batch_ms", batch_rate)):
            if key == "batch_ms":  # the server holds the answers it read: first each customer once, timed apart
                say(f"  reading every profile once in batches of {BATCH} (none held yet)")
                latencies, errors = asyncio.run(_offer(port, 0, len(ids) / BATCH * workers, every_id(),
                                                       connections=4, warm_up=False))
                result.cold_batch_ms = percentiles(latencies)
                result.errors += errors
            say(f"  offering {name} at {offered:,.0f}/s for {seconds:.0f} s")
            gc.disable()  # the generator's own collections (its tasks and answers) must not count as the server's
            try:
                latencies, errors = asyncio.run(_offer(port, offered, seconds, request))
            finally:
                gc.enable()
            setattr(result, key, percentiles(latencies))
            result.errors += errors
        result.held = _held_answers(base)
        say("  timing the direct client")
        client = LookupClient.from_url(redis_url)
        try:
            _time_direct(client, ids, 200, 1)  # warm up
            result.direct_ms = percentiles(_time_direct(client, ids, 5000, 1))
            result.direct_batch_ms = percentiles(_time_direct(client, ids, 500, BATCH))
        finally:
            client.close()
        return result
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        redis.Redis.from_url(redis_url).flushdb()
