"""The sweeper's clock: a timer that sends a tick into each of this worker's customer-events
partitions, carrying the newest event time the worker has seen. The profile agent applies
the time-driven transitions that are due (see agents/profile.py and stream/core/sweep.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agents.context import Pulse
from stream.core.sweep import TICK_KEY


def register(pulse: Pulse) -> None:
    topic_name = pulse.settings.topic("customer-events")

    @pulse.app.timer(interval=float(pulse.settings.sweep_seconds))
    async def sweep_tick() -> None:
        maxima = [int(value) for value in pulse.table("event-time-maxima").values()]
        if not maxima:
            return
        now = datetime.fromtimestamp(max(maxima), UTC).isoformat()
        for tp in pulse.app.consumer.assignment():
            if tp.topic == topic_name:
                await pulse.topic("customer-events").send(key=TICK_KEY, value=json.dumps({"now": now}).encode(),
                                                 partition=tp.partition)
