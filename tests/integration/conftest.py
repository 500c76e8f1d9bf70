"""Integration tests run against a real Kafka broker and a real Redis server.

The session starts them with the same code as `pulse up` (unless the configured addresses
already answer) and stops what it started. A service that cannot start fails the run with
the reason; nothing here skips.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from stream.infra import services
from stream.infra.process import InfraError, tail
from stream.infra.topics import delete_app_topics
from stream.infra.worker import WorkerProcess
from stream.io.replay import wait_until_processed
from stream.io.sample import sample_events
from stream.settings import Settings, load_settings
from stream.sinks.redis import customer_key
from stream.topology import processing_groups


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    base = load_settings()
    # Our own services' data lives with the user's `pulse up` data dir so a running
    # `pulse up` is reused; anything this session starts, it stops.
    before = {row.name: row.running for row in services.status(base)}
    try:
        services.up(base, say=lambda line: print(f"[infra] {line}"))
    except InfraError as exc:
        pytest.fail(f"integration services could not start: {exc}", pytrace=False)
    yield base
    started = tuple(name for name, running in before.items() if not running)
    if started:
        services.down(base, started)


TEST_DB_CANDIDATES = range(15, 0, -1)


@pytest.fixture(scope="session")
def test_redis_url(infra: Settings) -> Iterator[str]:
    """A Redis database of the test session's own: one that is empty when the session starts
    (or ``PULSE_TEST_REDIS_DB``), emptied after every test and at the end, so the tests
    leave nothing in the user's databases."""
    base = infra.redis_url.rsplit("/", 1)[0]
    wanted = os.environ.get("PULSE_TEST_REDIS_DB")
    candidates = [int(wanted)] if wanted else list(TEST_DB_CANDIDATES)
    chosen = next((db for db in candidates if not redis.Redis.from_url(f"{base}/{db}").dbsize()), None)
    if chosen is None:
        pytest.fail(f"no empty Redis database among {candidates} at {base} for the tests; empty one or set "
                    "PULSE_TEST_REDIS_DB to an empty database's number", pytrace=False)
    url = f"{base}/{chosen}"
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture
def test_redis(test_redis_url: str) -> Iterator[str]:
    """The session's Redis database, empty at the start and the end of the test."""
    client = redis.Redis.from_url(test_redis_url)
    client.flushdb()
    yield test_redis_url
    client.flushdb()
    client.close()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None,
             diagnose: Callable[[], str] | None = None) -> None:
    """Poll until ``predicate()`` holds; fail naming ``what`` after ``timeout`` seconds (with
    what ``diagnose()`` finds and the end of the worker's ``log``, when given, so a failure in CI
    can be diagnosed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    message = f"timed out after {timeout:.0f}s waiting for {what}"
    if diagnose is not None:
        message += f"\n--- diagnosis ---\n{diagnose()}"
    if log is not None:
        message += f"\n--- end of {log} ---\n{tail(log, 60)}"
    raise AssertionError(message)


def caught_up(settings: Settings, timeout: float = 120, settle: float = 0.5) -> None:
    """Wait until the workers have processed every record and the Redis sink has written and
    committed everything they produced (the committed offsets of every group reach the end)."""
    behind = asyncio.run(wait_until_processed(settings.kafka, processing_groups(settings), timeout,
                                              settle=settle))
    assert not behind, f"still behind after {timeout:.0f}s: {behind}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Isolated:
    """Settings and environment of one test's own app: unique topics, group, data dir, port."""

    settings: Settings
    env: dict[str, str]
    tag: str
    data_dir: Path


@pytest.fixture
def isolated(infra: Settings, test_redis: str, tmp_path: Path) -> Iterator[Isolated]:
    """Its Redis database is the session's test database, empty when the test starts."""
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    env = {
        "PULSE_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "PULSE_REDIS_URL": test_redis,
        "PULSE_TOPIC_PREFIX": f"t{tag}.",
        "PULSE_APP_ID": f"pulse-test-{tag}",
        "PULSE_DATA_DIR": str(tmp_path / "data"),
        "PULSE_WEB_PORT": str(port),
        "PULSE_PARTITIONS": "4",
        "PULSE_LOG_LEVEL": "info",
        "PULSE_API_TOKENS": f"test-token-{tag}",  # the worker's customer view needs one
    }
    settings = Settings(
        kafka_bootstrap=infra.kafka_bootstrap, redis_url=test_redis,
        topic_prefix=f"t{tag}.", app_id=f"pulse-test-{tag}", data_dir=tmp_path / "data",
        web_port=port, partitions=4,
    )
    yield Isolated(settings=settings, env=env, tag=tag, data_dir=tmp_path / "data")
    # The test's workers have stopped (in its own finally blocks): leave no topic behind.
    asyncio.run(delete_app_topics(infra.kafka, (settings.topic_prefix, f"{settings.app_id}-")))


def sample_file(isolated: Isolated, customers: int, count: int, seed: int, prefix: str) -> tuple[list[dict], Path]:
    """Sample events (``stream.io.sample``) with ids unique to the test, and a JSON-lines file of
    them in its data directory, for ``pulse replay``."""
    events = sample_events(customers, count, seed=seed, prefix=f"{prefix}{isolated.tag}")
    path = isolated.data_dir / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return events, path


def events_in_redis(client: redis.Redis, customer_ids: Iterable[str]) -> Callable[[], int]:
    """A probe of how many events the Redis hashes of these customers count (-1: Redis is down)."""
    ids = list(customer_ids)

    def applied() -> int:
        try:
            pipe = client.pipeline(transaction=False)
            for cid in ids:
                pipe.hget(customer_key(cid), "events")
            return sum(int(v or 0) for v in pipe.execute())
        except redis.RedisError:
            return -1

    return applied


def redis_behind_table(client: redis.Redis, worker: WorkerProcess, customer_ids: Iterable[str]) -> str:
    """The customers whose Redis hash counts fewer events than the worker's table, with both
    sides' versions (a wait on ``events_in_redis`` explains its failure with it)."""
    lines = []
    for cid in customer_ids:
        row = client.hgetall(customer_key(cid))
        try:
            state = worker.get(f"/customers/{cid}/")
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the failure it explains
            return f"the worker's table could not be read: {exc!r}"
        if state is None or int(row.get("events", 0)) < int(state.get("events", 0)):
            lines.append(f"{cid}: redis events={row.get('events')} event_version={row.get('event_version')} "
                         f"version={row.get('version')}; table " + (
                             "missing" if state is None else
                             f"events={state.get('events')} version={state.get('version')} "
                             f"revision={state.get('revision')}"))
    return "\n".join(lines) or "Redis counts every event the table has (the table is behind)"


# A webhook endpoint for the alert relay (the relay and security tests use it).
SECRET = "relay-secret-0123456789"


class Receiver:
    """A webhook endpoint that answers ``status`` (503 while down) and records every attempt."""

    def __init__(self) -> None:
        self.status = 200
        self.refuse: set[str] = set()  # alert ids answered 400
        self.attempts: list[str] = []
        self.delivered: list[dict] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        alert_id = headers.get("x-pulse-alert-id", "")
        stamp = headers.get("x-pulse-timestamp", "")
        mine = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        with self.lock:
            self.attempts.append(alert_id)
            if not hmac.compare_digest(headers.get("x-pulse-signature", ""), f"sha256={mine}"):
                self.bad_signatures += 1
                return 401
            if alert_id in self.refuse:
                return 400
            if self.status == 200:
                self.delivered.append(json.loads(body))
            return self.status

    def ids(self) -> set[str]:
        with self.lock:
            return {alert["alert_id"] for alert in self.delivered}


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
