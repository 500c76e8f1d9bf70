"""`pulse up` / `status` / `down` as a user runs them (subprocess), against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.infra.kafka import kafka_ready
from stream.infra.redis import redis_ready
from stream.settings import Settings
from tests.helpers import run_pulse
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_up_status_down_start_only_what_is_missing_and_stop_only_ours(
    infra: Settings, tmp_path: Path
) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
           "PULSE_REDIS_URL": redis_url, "PULSE_DATA_DIR": str(tmp_path)}
    try:
        first = run_pulse(env, "up", timeout=180, check=False)
        assert first.returncode == 0, first.stderr
        assert "kafka  already running" in first.stdout
        assert redis_ready(redis_url)

        second = run_pulse(env, "up", timeout=180, check=False)
        assert second.returncode == 0, second.stderr
        assert "redis  already running" in second.stdout

        status = run_pulse(env, "status", timeout=180, check=False)
        assert status.returncode == 0
        lines = {line.split()[0]: line for line in status.stdout.splitlines()}
        assert "external" in lines["kafka"] and "running" in lines["kafka"]
        assert "pulse (pid" in lines["redis"] and redis_url in lines["redis"]

        down = run_pulse(env, "down", timeout=180, check=False)
        assert down.returncode == 0
        assert "redis  stopped" in down.stdout
        assert "kafka  not started by pulse" in down.stdout
        assert not redis_ready(redis_url)
        assert kafka_ready(infra.kafka), "down must never stop an external Kafka"

        after = run_pulse(env, "status", timeout=180, check=False)
        assert after.returncode == 1
        assert "down" in after.stdout.splitlines()[1]
    finally:
        run_pulse(env, "down", timeout=180, check=False)


def test_a_bad_setting_fails_with_the_variable_and_form(tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_PARTITIONS": "many", "PULSE_DATA_DIR": str(tmp_path)}
    result = run_pulse(env, "up", timeout=180, check=False)
    assert result.returncode != 0
    assert "PULSE_PARTITIONS='many'" in result.stderr
    assert "an integer from 1 to 1024" in result.stderr


def test_a_remote_address_that_does_not_answer_is_not_started(tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_REDIS_URL": "redis://192.0.2.1:6379/0",
           "PULSE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c",
         "from stream.infra.redis import start_redis; from pathlib import Path;"
         f"start_redis('redis://192.0.2.1:6379/0', Path({str(tmp_path)!r}))"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "not a loopback" in result.stderr
