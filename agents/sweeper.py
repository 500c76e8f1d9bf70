"""The sweeper's clock: a timer that sends a tick into each of this worker's customer-events
partitions, carrying that partition's newest event time while it receives events, and the
worker's newest once it is idle (``stream/core/watermark.py``). The profile agent applies the
time-driven transitions that are due (see agents/profile.py and stream/core/sweep.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from agents.context import Pulse
from stream.core.sweep import TICK_KEY


def register(pulse: Pulse) -> None:
    topic_name = pulse.settings.topic("customer-events")

    @pulse.app.timer(interval=float(pulse.settings.sweep_seconds))
    async def sweep_tick() -> None:
        maxima = {int(str(key).removeprefix("p")): int(value)
                  for key, value in pulse.table("event-time-maxima").items() if str(key).startswith("p")}
        if not maxima:
            return
        times = pulse.sweep_clock.times(maxima, time.monotonic())
        newest = max(maxima.values())
        for tp in pulse.app.consumer.assignment():
            if tp.topic == topic_name:
                now = datetime.fromtimestamp(times.get(tp.partition, newest), UTC).isoformat()
                await pulse.topic("customer-events").send(key=TICK_KEY, value=json.dumps({"now": now}).encode(),
                                                 partition=tp.partition)
