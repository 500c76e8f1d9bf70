"""``pulse bench --lookups``: lookup latency of ``pulse serve`` and of the direct client.

Fills an empty Redis database with synthetic profiles through the real sink, starts ``pulse
serve`` as its own process, offers single-customer GETs and then 100-id batches at a fixed
rate (open loop: a request's latency counts from when it was due, so a slow answer cannot
hide the ones queued behind it), then times the direct client in this process. The
database is emptied afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis

from schemas import Profile
from stream.api.lookup import LookupClient
from stream.cli.bench import BenchError, percentiles
from stream.sinks import RedisSink

BATCH = 100


@dataclass
class LookupBenchResult:
    profiles: int
    rate: float
    seconds: float
    single_ms: dict[str, float] = field(default_factory=dict)
    batch_ms: dict[str, float] = field(default_factory=dict)
    direct_ms: dict[str, float] = field(default_factory=dict)
    direct_batch_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        def row(name: str, figures: dict[str, float]) -> str:
            return (f"  {name:<34} p50 {figures.get('p50', float('nan')):7.2f} ms   "
                    f"p99 {figures.get('p99', float('nan')):7.2f} ms   max {figures.get('max', float('nan')):7.2f} ms"
                    f"   ({figures.get('count', 0):,.0f})")

        return [f"pulse bench --lookups: {self.profiles:,} profiles in Redis, {self.rate:,.0f} requests/s offered "
                f"for {self.seconds:.0f} s per kind, {self.errors} failed requests",
                row("GET /v1/customers/{id}", self.single_ms),
                row(f"POST /v1/customers:batch ({BATCH} ids)", self.batch_ms),
                row("direct client get()", self.direct_ms),
                row(f"direct client get_many({BATCH})", self.direct_batch_ms)]


def synthetic_profiles(count: int, seed: int = 3) -> list[Profile]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    segments = ["Champions", "Loyal", "Potential Loyalist", "At Risk", "Hibernating", "Lost"]
    profiles = []
    for i in range(count):
        last = now - timedelta(days=rng.randint(0, 300))
        profiles.append(Profile(
            customer_id=f"lk{i:07d}", version=rng.randint(1, 50), events=rng.randint(1, 200),
            orders=rng.randint(1, 30), monetary=f"{rng.uniform(5, 3000):.2f}",
            first_purchase_at=last - timedelta(days=rng.randint(0, 700)), last_purchase_at=last,
            r=rng.randint(1, 5), f=rng.randint(1, 5), m=rng.randint(1, 5), segment=rng.choice(segments),
            value_tier=rng.choice(["diamond", "gold", "potential"]), lifecycle="mature", behaviour="regular",
            top_categories="books,garden", channel="web", as_of_event_time=last, computed_at=now,
            rules_version="bench", model_version="heuristic-1", churn_probability=round(rng.random(), 4),
            churn_risk=rng.choice(["low", "medium", "high"]), churn_reasons='["silent for 2 usual gaps"]'))
    return profiles


async def _fill(url: str, profiles: list[Profile]) -> None:
    sink = RedisSink.from_url(url)
    try:
        for start in range(0, len(profiles), 1000):
            await sink.write_profiles(profiles[start:start + 1000])
    finally:
        await sink.close()


async def _offer(base: str, token: str, rate: float, seconds: float, request: Callable[[httpx.AsyncClient], Any]
                 ) -> tuple[list[float], int]:
    """Send ``rate`` requests per second for ``seconds``; latencies (ms) from when each was due."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=5.0) as client:
        async def one(due: float) -> None:
            nonlocal errors
            try:
                answer = await request(client)
                if answer.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - due) * 1000)

        for _ in range(20):  # warm up the connections
            await request(client)
        tasks = []
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
    return latencies, errors


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def run_lookup_bench(redis_url: str, profiles: int, rate: float, seconds: float,
                     say: Callable[[str], None] = print) -> LookupBenchResult:
    if redis.Redis.from_url(redis_url).dbsize():
        raise BenchError(f"Redis database {redis_url} is not empty; the benchmark writes there and empties it "
                         "afterwards: choose an unused one with --redis-db")
    result = LookupBenchResult(profiles=profiles, rate=rate, seconds=seconds)
    token, port = secrets.token_urlsafe(24), _free_port()
    server: subprocess.Popen[bytes] | None = None
    try:
        say(f"  writing {profiles:,} profiles to {redis_url}")
        made = synthetic_profiles(profiles)
        asyncio.run(_fill(redis_url, made))
        ids = [p.customer_id for p in made]
        env = {**os.environ, "PULSE_REDIS_URL": redis_url, "PULSE_API_TOKENS": token}
        server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(server, base)
        rng = random.Random(7)

        def single(client: httpx.AsyncClient) -> Any:
            return client.get(f"/v1/customers/{rng.choice(ids)}")

        def batch(client: httpx.AsyncClient) -> Any:
            return client.post("/v1/customers:batch", json={"ids": rng.sample(ids, BATCH)})

        for name, request, key in (("single GETs", single, "single_ms"), (f"{BATCH}-id batches", batch, "batch_ms")):
            say(f"  offering {name} at {rate:,.0f}/s for {seconds:.0f} s")
            latencies, errors = asyncio.run(_offer(base, token, rate, seconds, request))
            setattr(result, key, percentiles(latencies))
            result.errors += errors
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


def _wait_for_server(server: subprocess.Popen[bytes], base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = server.stderr.read().decode(errors="replace") if server.stderr else ""
            raise BenchError(f"pulse serve exited with {server.returncode}: {err.strip()}")
        try:
            if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BenchError(f"pulse serve did not answer at {base} within {timeout:.0f}s")
