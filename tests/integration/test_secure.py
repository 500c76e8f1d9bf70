"""Secured connections for real: a Kafka broker with only a SASL_SSL listener (SCRAM-SHA-512)
and a Redis server with only TLS and a password, both with certificates from a CA generated
for the test (what `pulse up --secure` starts). The worker, replay, export, lookup API and
alert relay run end to end over them; with a wrong password or an untrusted CA each command
stops at start-up with a message naming the setting, and never shows the secret."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.infra.kafka import start_kafka
from stream.infra.process import InfraError, stop
from stream.infra.redis import start_redis, tls_server_binary
from stream.infra.secure import SecureSetup, ensure_setup
from stream.infra.worker import WorkerProcess, worker_env
from stream.io.sample import sample_events
from tests.helpers import run_pulse
from tests.integration.conftest import SECRET, Receiver, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "secure-test-token-0123456789"


def _listen_ports(count: int) -> list[int]:
    """``count`` consecutive ports below Linux's ephemeral range (32768-60999), each bindable now:
    a port in that range can be taken by any outgoing connection's local end before the broker
    binds it (CI once failed so on the controller listener's port)."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20_000, 32_000 - count)
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return list(range(first, first + count))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and 32000")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecureSetup, dict[str, str]]]:
    try:
        tls_server_binary()
    except InfraError:  # installed by the project's script, like the browser of the dashboard test
        subprocess.run([str(ROOT / "scripts" / "install-redis-tls.sh")], check=True, stdout=subprocess.DEVNULL)
    home = tmp_path_factory.mktemp("secured") / "secure"  # where `pulse up --secure` of the parent data dir keeps them
    setup = ensure_setup(home / "tls")
    kafka_port, _controller_port, redis_port = _listen_ports(3)  # the broker takes kafka_port + 1 too
    env = setup.env(f"127.0.0.1:{kafka_port}", "127.0.0.1", redis_port)
    try:
        start_kafka(env["PULSE_KAFKA_BOOTSTRAP"], home, 4, say=lambda _: None, secure=setup)
        start_redis(env["PULSE_REDIS_URL"], home, say=lambda _: None, secure=setup)
        yield setup, env
    finally:
        for name in ("redis", "kafka"):
            stop(home, name)
        shutil.rmtree(home, ignore_errors=True)


def _secrets(setup: SecureSetup) -> tuple[str, str]:
    return setup.kafka_password, setup.redis_password


def test_worker_replay_export_api_and_relay_run_over_tls_and_sasl(
        secured: tuple[SecureSetup, dict[str, str]], receiver: tuple[Receiver, str],
        tmp_path: Path) -> None:
    setup, secure_env = secured
    state, webhook = receiver
    port = free_port()
    env = {**os.environ, **secure_env, "PULSE_TOPIC_PREFIX": "sec.", "PULSE_APP_ID": "pulse-secure-test",
           "PULSE_DATA_DIR": str(tmp_path / "data"), "PULSE_WEB_PORT": str(port), "PULSE_API_TOKENS": TOKEN,
           "PULSE_WEBHOOK_SECRET": SECRET}
    events = sample_events(20, 200, seed=3, prefix="sec")
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    customers = sorted({e["customer_id"] for e in events})

    worker = WorkerProcess(worker_env(env), tmp_path / "worker.log", port).start()
    try:
        replayed = run_pulse(env, "replay", str(path), "--wait", "--timeout", "180")
        assert "processed" in replayed.stdout
        exported = run_pulse(env, "export", "--out", "-")
        rows = [json.loads(line) for line in exported.stdout.splitlines()]
        assert sorted(row["customer_id"] for row in rows) == customers
        assert sum(row["events"] for row in rows) == len(events)

        api_port = free_port()
        server_log = tmp_path / "serve.log"
        server = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", str(api_port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=server_log.open("wb"), stdin=subprocess.DEVNULL)
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{api_port}/v1/customers/{customers[0]}",
                                             headers={"Authorization": f"Bearer {TOKEN}"})

            def answered() -> bool:
                try:
                    with urllib.request.urlopen(request, timeout=2) as response:
                        return bool(response.status == 200)
                except OSError:
                    return False

            wait_for(answered, 30, "the lookup API answering from the TLS Redis")
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"pulse serve did not stop:\n{server_log.read_text()[-3000:]}") from None

        alert_ids = {entry[1]["alert_id"] for entry in redis.Redis.from_url(
            env["PULSE_REDIS_URL"], decode_responses=True).xrange("pulse:alerts")}
        assert alert_ids, "the sample stream raises alerts"
        relay = subprocess.Popen([sys.executable, "-m", "stream.cli", "alerts", "relay", "--webhook", webhook,
                                  "--from-beginning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: state.ids() == alert_ids, 60, "every alert relayed from the TLS Redis")
        finally:
            relay.terminate()
            relay_err = relay.communicate(timeout=20)[1].decode()
        assert not any(secret in relay_err for secret in _secrets(setup))
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "Worker ready" in log or "Ready" in log
    assert not any(secret in log for secret in _secrets(setup)), "a password appeared in the worker's log"
    redis.Redis.from_url(env["PULSE_REDIS_URL"]).flushall()


def test_status_shows_the_secured_services_as_started_by_pulse(
        secured: tuple[SecureSetup, dict[str, str]], tmp_path: Path) -> None:
    setup, secure_env = secured
    data_dir = setup.home.parent.parent  # <data dir>/secure/tls
    shown = run_pulse({**os.environ, **secure_env, "PULSE_DATA_DIR": str(data_dir)}, "status", "--secure")
    lines = shown.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["kafka", "redis"], shown.stdout
    assert all("running" in line and "pulse (pid" in line for line in lines), shown.stdout
    plain = run_pulse({**os.environ, **secure_env, "PULSE_DATA_DIR": str(data_dir)}, "status", check=False)
    assert plain.returncode == 0 and "external" in plain.stdout  # not this data dir's plain `pulse up`


@pytest.mark.parametrize("wrong", ["kafka password", "redis password", "kafka ca"])
def test_a_wrong_secret_stops_every_command_at_start_naming_the_setting(
        secured: tuple[SecureSetup, dict[str, str]], wrong: str, tmp_path: Path) -> None:
    setup, secure_env = secured
    env = {**os.environ, **secure_env, "PULSE_TOPIC_PREFIX": "sec-wrong.", "PULSE_APP_ID": "pulse-secure-wrong",
           "PULSE_DATA_DIR": str(tmp_path / "data"), "PULSE_WEB_PORT": str(free_port()), "PULSE_API_TOKENS": TOKEN,
           "PULSE_WEBHOOK_SECRET": SECRET}
    bad = "not-the-password-0123456789"
    if wrong == "kafka password":
        env["PULSE_KAFKA_SASL_PASSWORD"], setting = bad, "PULSE_KAFKA_SASL_PASSWORD"
    elif wrong == "redis password":
        env["PULSE_REDIS_URL"] = env["PULSE_REDIS_URL"].replace(setup.redis_password, bad)
        setting = "PULSE_REDIS_URL"
    else:  # a CA that did not sign the broker's certificate
        other = ensure_setup(tmp_path / "other-ca")
        env["PULSE_KAFKA_SSL_CAFILE"], setting = str(other.ca_file), "PULSE_KAFKA_SSL_CAFILE"
    path = tmp_path / "one.jsonl"
    path.write_text('{"event_id": "e1", "customer_id": "c1", "event_time": "2024-01-01T00:00:00+00:00", '
                    '"type": "page_view", "channel": "web"}\n')
    commands = {"worker": [sys.executable, "-m", "agents"],
                "replay": [sys.executable, "-m", "stream.cli", "replay", str(path)],
                "export": [sys.executable, "-m", "stream.cli", "export", "--out", "-"],
                "serve": [sys.executable, "-m", "stream.cli", "serve", "--port", str(free_port())],
                "relay": [sys.executable, "-m", "stream.cli", "alerts", "relay", "--webhook", "http://127.0.0.1:9/"]}
    uses = {"kafka password": ("worker", "replay"), "kafka ca": ("worker", "replay"),
            "redis password": ("worker", "export", "serve", "relay")}[wrong]
    for name in uses:
        started = time.monotonic()
        done = subprocess.run(commands[name], env=env, capture_output=True, text=True, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode != 0, f"{name} started with a wrong {wrong}"
        assert setting in output, f"{name} did not name {setting}: {output[-2000:]}"
        assert bad not in output and not any(secret in output for secret in _secrets(setup)), \
            f"{name} showed a secret"
        assert time.monotonic() - started < 60, f"{name} took long to refuse"
