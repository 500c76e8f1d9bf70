"""The churn trainer survives a restart: stop the worker running it and start it again, and
the model version and its progressive metrics continue from the snapshot, not from zero:
after the rest of the events, the model has learnt every distinct label exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.infra.worker import WorkerProcess, worker_env
from stream.io.connect import KafkaAccess
from tests.helpers import run_pulse
from tests.integration.conftest import Isolated, wait_for

pytestmark = pytest.mark.integration


async def _label_ids(kafka: KafkaAccess, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        # an explicit offset: seek_to_beginning right after assign() left the position at the end
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        ids = []
        while end and (await consumer.position(tp)) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                ids += [json.loads(r.value)["label_id"] for r in records]
        return ids
    finally:
        await consumer.stop()


def test_the_model_continues_from_its_snapshot_after_a_restart(isolated: Isolated) -> None:
    env = {**os.environ, **isolated.env, "PULSE_MODEL_MIN_LABELS": "50"}
    events = isolated.data_dir / "events.jsonl"
    run_pulse(env, "generate", "--customers", "80", "--days", "365", "--seed", "11", "--prefix", f"t{isolated.tag}",
           "--out", str(events))
    lines = events.read_text().splitlines()
    first, rest = isolated.data_dir / "first.jsonl", isolated.data_dir / "rest.jsonl"
    first.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    rest.write_text("\n".join(lines[len(lines) // 2:]) + "\n")
    labels_topic = isolated.settings.topic("churn-labels")
    kafka = isolated.settings.kafka

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w1.log", isolated.settings.web_port).start()
    try:
        run_pulse(env, "replay", str(first), "--wait", "--timeout", "600")
        emitted = len(set(asyncio.run(_label_ids(kafka, labels_topic))))
        assert emitted >= 100, emitted
        wait_for(lambda: worker.get("/model/").get("labels_seen") == emitted, 60, "the first half's labels learnt")
        before = worker.get("/model/")
    finally:
        assert worker.stop(signal.SIGTERM) == 0

    worker = WorkerProcess(worker_env(env), isolated.data_dir / "w2.log", isolated.settings.web_port).start()
    try:
        wait_for(lambda: worker.get("/model/").get("model_version") == before["model_version"], 60,
                 "the restarted worker reads the last snapshot")
        run_pulse(env, "replay", str(rest), "--wait", "--timeout", "600")
        emitted_all = len(set(asyncio.run(_label_ids(kafka, labels_topic))))
        assert emitted_all > emitted
        wait_for(lambda: worker.get("/model/").get("labels_seen") == emitted_all, 60, "every label learnt once")
        after = worker.get("/model/")
    finally:
        worker.stop()
    version = lambda answer: int(answer["model_version"].rsplit("-v", 1)[1])  # noqa: E731
    assert version(after) > version(before) >= 1
    assert after["metrics"]["roc_auc"] > 0.5 and after["labels_seen"] > before["labels_seen"]
    print(f"\nbefore restart: {before['model_version']} {before['labels_seen']} labels {before['metrics']}; "
          f"after: {after['model_version']} {after['labels_seen']} labels {after['metrics']}")
