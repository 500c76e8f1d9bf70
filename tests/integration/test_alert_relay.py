"""Alert delivery against a real Redis and a local HTTP receiver: every alert arrives at least
once through an outage of the receiver and a SIGKILLed relay, signed; one the receiver
refuses goes to the dead-letter stream; `pulse alerts follow` prints them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import redis

from schemas import Alert, Contribution
from stream.sinks import RedisSink
from tests.helpers import run_pulse
from tests.integration.conftest import SECRET, Isolated, Receiver, wait_for

pytestmark = pytest.mark.integration

def _alerts(url: str, names: list[str], held_out: frozenset[str] = frozenset()) -> list[str]:
    alerts = [Alert(alert_id=f"{name}:churn_risk:1", customer_id=name, kind="churn_risk", severity="high", score=0.9,
                    threshold=0.7, reason="silent for 3 usual gaps", event_time=datetime(2024, 3, 1, tzinfo=UTC),
                    explanation=(Contribution(feature="recency_ratio", contribution=1.2),),
                    model_version="heuristic-1", rules_version="r1", holdout=name in held_out) for name in names]

    async def write() -> None:
        sink = RedisSink.from_url(url)
        await sink.write_alerts(alerts)
        await sink.close()

    asyncio.run(write())
    return [alert.alert_id for alert in alerts]


def _relay(env: dict[str, str], webhook: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "alerts", "relay", "--webhook", webhook, *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_every_alert_arrives_through_an_outage_and_a_killed_relay(isolated: Isolated,
                                                                  receiver: tuple[Receiver, str]) -> None:
    state, webhook = receiver
    env = {**os.environ, **isolated.env, "PULSE_WEBHOOK_SECRET": SECRET}
    url = isolated.settings.redis_url
    first = _alerts(url, [f"a{i}" for i in range(10)])

    state.status = 503  # the receiver is down when the relay starts
    relay = _relay(env, webhook, "--from-beginning")
    try:
        wait_for(lambda: len(state.attempts) >= 2, 30, "the relay retrying against the failing receiver")
        state.status = 200
        wait_for(lambda: state.ids() == set(first), 60, "the first alerts delivered after the outage")

        state.status = 503  # fails again: the next alert is read but never acknowledged ...
        held = _alerts(url, ["held"])
        wait_for(lambda: held[0] in state.attempts, 30, "an attempt at the held alert")
    finally:
        relay.send_signal(signal.SIGKILL)  # ... when the relay dies
        relay.wait(timeout=10)
    later = _alerts(url, [f"b{i}" for i in range(5)])  # raised while no relay runs
    state.status = 200
    relay = _relay(env, webhook)  # the group exists: resumes, pending first
    try:
        everything = set(first) | set(held) | set(later)
        wait_for(lambda: state.ids() == everything, 60, "every alert delivered after the restart")
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=20) == 0
    assert state.bad_signatures == 0
    assert all(alert["explanation"] == [{"feature": "recency_ratio", "contribution": 1.2}]
               and alert["score"] == 0.9 for alert in state.delivered)
    client = redis.Redis.from_url(url)
    assert client.xpending("pulse:alerts", "pulse-relay")["pending"] == 0
    assert client.xlen("pulse:alerts:relay-dlq") == 0


def test_an_alert_the_receiver_refuses_is_dead_lettered_and_the_rest_delivered(
        isolated: Isolated, receiver: tuple[Receiver, str]) -> None:
    state, webhook = receiver
    env = {**os.environ, **isolated.env, "PULSE_WEBHOOK_SECRET": SECRET}
    url = isolated.settings.redis_url
    ids = _alerts(url, ["r1", "r2", "r3"])
    state.refuse = {ids[1]}
    relay = _relay(env, webhook, "--from-beginning")
    try:
        wait_for(lambda: state.ids() == {ids[0], ids[2]}, 60, "the accepted alerts delivered")
        client = redis.Redis.from_url(url, decode_responses=True)
        wait_for(lambda: client.xlen("pulse:alerts:relay-dlq") == 1, 30, "the refused alert dead-lettered")
        (_, letter), = client.xrange("pulse:alerts:relay-dlq")
        assert letter["alert_id"] == ids[1] and letter["relay_error"].startswith("HTTP 400")
        assert letter["relay_attempts"] == "1"  # a 4xx is not retried
        assert state.attempts.count(ids[1]) == 1
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=20)


def test_held_out_alerts_are_acknowledged_and_never_sent(isolated: Isolated,
                                                         receiver: tuple[Receiver, str]) -> None:
    state, webhook = receiver
    env = {**os.environ, **isolated.env, "PULSE_WEBHOOK_SECRET": SECRET}
    url = isolated.settings.redis_url
    ids = _alerts(url, ["h1", "t1", "h2", "t2"], held_out=frozenset({"h1", "h2"}))
    relay = _relay(env, webhook, "--from-beginning")
    try:
        wait_for(lambda: state.ids() == {ids[1], ids[3]}, 60, "the treated customers' alerts delivered")
        client = redis.Redis.from_url(url, decode_responses=True)
        # every entry acknowledged in the relay's group, the held-out ones too: none waits for delivery
        wait_for(lambda: client.xpending("pulse:alerts", "pulse-relay")["pending"] == 0, 30, "nothing pending")
        assert not set(state.attempts) & {ids[0], ids[2]}
        assert not client.exists("pulse:alerts:relay-dlq")
    finally:
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=20)
    assert "2 delivered" in err.decode() and "2 held out (not sent)" in err.decode()
    shown = run_pulse(env, "alerts", "follow", "--from-beginning", "--count", "1", timeout=60)
    assert "h1" in shown.stdout and "[held out]" in shown.stdout


def test_relay_needs_a_secret_and_follow_prints_the_alerts(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env}
    env.pop("PULSE_WEBHOOK_SECRET", None)
    refused = run_pulse(env, "alerts", "relay", "--webhook", "http://127.0.0.1:9/x", timeout=60, check=False)
    assert refused.returncode == 2 and "PULSE_WEBHOOK_SECRET" in refused.stderr
    ids = _alerts(isolated.settings.redis_url, ["f1", "f2"])
    shown = run_pulse(env, "alerts", "follow", "--from-beginning", "--json", "--count", "2", timeout=60)
    assert [json.loads(line)["alert_id"] for line in shown.stdout.splitlines()] == ids
    text = run_pulse(env, "alerts", "follow", "--from-beginning", "--count", "1", timeout=60)
    assert "churn_risk" in text.stdout and "f1" in text.stdout and "silent for 3 usual gaps" in text.stdout
