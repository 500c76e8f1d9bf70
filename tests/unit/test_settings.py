from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import Settings, SettingsError, load_settings


def test_defaults_match_the_embedded_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PULSE_KAFKA_BOOTSTRAP", "PULSE_REDIS_URL", "PULSE_TOPIC_PREFIX", "PULSE_PARTITIONS"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.topic("events") == "pulse.events"


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_KAFKA_BOOTSTRAP", "kafka://b1:9092, b2:9093")
    monkeypatch.setenv("PULSE_PARTITIONS", "12")
    monkeypatch.setenv("PULSE_TOPIC_PREFIX", "shop1.")
    s = load_settings()
    assert s.kafka_hosts == [("b1", 9092), ("b2", 9093)]
    assert s.partitions == 12
    assert s.topic("events.dlq") == "shop1.events.dlq"


@pytest.mark.parametrize(
    ("var", "value", "form"),
    [
        ("PULSE_KAFKA_BOOTSTRAP", "localhost", "host:port"),
        ("PULSE_KAFKA_BOOTSTRAP", "h:99999", "host:port"),
        ("PULSE_REDIS_URL", "http://x", "redis://"),
        ("PULSE_PARTITIONS", "abc", "an integer from 1 to 1024"),
        ("PULSE_PARTITIONS", "0", "an integer from 1 to 1024"),
        ("PULSE_WEB_PORT", "70000", "1 to 65535"),
        ("PULSE_TOPIC_PREFIX", "bad prefix!", "letters, digits"),
        ("PULSE_LOG_LEVEL", "loud", "debug, info"),
        ("PULSE_KAFKA_SESSION_TIMEOUT_SECONDS", "5", "an integer from 6 to 90 (seconds)"),
        ("PULSE_CHURN_WARN_BY", "both", "either or served"),
        ("PULSE_CLUSTERS", "1", "give 2 to 8, or 0"),
        ("PULSE_CHURN_MODEL", "x", "shadow or auto"),
        ("PULSE_EVENT_LOOP", "trio", "uvloop or asyncio"),
        ("PULSE_KAFKA_SECURITY_PROTOCOL", "bogus", "PLAINTEXT, SSL"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_accepted_form(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, form: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert var in message
    assert form in message
    assert repr(value) in message


def test_every_setting_documents_its_accepted_form() -> None:
    for name, info in Settings.model_fields.items():
        assert isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("form"), name
        assert info.description, name


def test_a_dedup_horizon_shorter_than_the_lateness_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_ALLOWED_LATENESS_SECONDS", "7200")
    monkeypatch.setenv("PULSE_DEDUP_HORIZON_SECONDS", "3600")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "PULSE_DEDUP_HORIZON_SECONDS=3600" in str(excinfo.value)
    assert "PULSE_ALLOWED_LATENESS_SECONDS (7200)" in str(excinfo.value)


@pytest.mark.parametrize(("seconds", "heartbeat_ms"), [(15, 3000), (6, 2000), (90, 3000)])
def test_group_timing_heartbeats_at_least_three_times_a_session(
        monkeypatch: pytest.MonkeyPatch, seconds: int, heartbeat_ms: int) -> None:
    monkeypatch.setenv("PULSE_KAFKA_SESSION_TIMEOUT_SECONDS", str(seconds))
    timing = load_settings().group_timing
    assert timing == {"session_timeout_ms": seconds * 1000, "heartbeat_interval_ms": heartbeat_ms}


def test_the_worker_app_uses_the_session_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agents.app import create_app

    monkeypatch.setenv("PULSE_KAFKA_SESSION_TIMEOUT_SECONDS", "12")
    conf = create_app(load_settings(data_dir=tmp_path)).app.conf
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (12.0, 3.0)


@pytest.mark.parametrize(("name", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_worker_runs_on_the_event_loop_named(name: str, module: str) -> None:
    import asyncio

    from agents.__main__ import use_event_loop

    policy = asyncio.get_event_loop_policy()
    try:
        use_event_loop(name)
        loop = asyncio.new_event_loop()  # what the worker and its consumer thread create
        try:
            assert type(loop).__module__.split(".")[0] == module
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(policy)
