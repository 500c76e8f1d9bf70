"""agents/stall_watch.py on a real event loop: a callback that holds the loop is reported while it
holds it (with its stack) and measured once the loop runs again; a loop that keeps running is not."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from agents.stall_watch import StallWatch


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # (releases the GIL, as a blocking socket or file read would)


def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # holds the GIL too, but Python hands it over every 5 ms
        pass


async def _run(watch: StallWatch, work: list[tuple[float, float]]) -> None:
    """Start ``watch``, then for each (pause, hold): let the loop run ``pause`` s, then hold it."""
    watch.start()
    try:
        for pause, hold in work:
            await asyncio.sleep(pause)
            if hold:
                (_hold_the_loop if hold > 0 else _spin)(abs(hold))
        await asyncio.sleep(0.2)  # the beat after the stall
    finally:
        watch.stop()


@pytest.mark.parametrize("hold", [0.6, -0.6], ids=["blocking call", "busy in Python"])
def test_a_held_loop_is_reported_with_its_stack_and_measured(hold: float, caplog: pytest.LogCaptureFixture) -> None:
    stalls: list[float] = []
    with caplog.at_level(logging.WARNING, logger="agents.stall_watch"):
        asyncio.run(_run(StallWatch(0.25, stalls.append), [(0.2, hold)]))
    assert len(stalls) == 1 and 0.5 <= stalls[0] < 1.5
    during, after = [r.getMessage() for r in caplog.records]
    assert "held for" in during and "so far" in during
    assert ("_hold_the_loop" if hold > 0 else "_spin") in during  # the stack shows what holds it
    assert f"held for {stalls[0]:.2f} s (stack above)" in after


def test_a_loop_that_keeps_running_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    stalls: list[float] = []
    with caplog.at_level(logging.WARNING, logger="agents.stall_watch"):
        asyncio.run(_run(StallWatch(0.25, stalls.append), [(0.05, 0.1)] * 8))  # short holds only
    assert stalls == []
    assert caplog.records == []


def test_pulse_bench_counts_the_stalls_a_worker_logs_within_the_probes(caplog: pytest.LogCaptureFixture,
                                                                         tmp_path: Path) -> None:
    from stream.cli.bench import Bench
    from stream.settings import Settings

    stalls: list[float] = []
    with caplog.at_level(logging.WARNING, logger="agents.stall_watch"):
        asyncio.run(_run(StallWatch(0.25, stalls.append), [(0.1, 0.4), (0.1, 0.5)]))
    assert len(stalls) == 2
    formatter = logging.Formatter("[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s")  # the worker's
    run = Bench(Settings(), redis_db=13)
    run.data_dir.rmdir()  # (made empty at construction)
    run.data_dir = tmp_path
    (tmp_path / "worker-1.log").write_text("".join(formatter.format(record) + "\n" for record in caplog.records))
    ended = [record.created for record in caplog.records if "so far" not in record.getMessage()]
    assert run.loop_stalls(0, time.time() + 1) == [round(held, 2) for held in stalls]
    assert run.loop_stalls(ended[1] - 0.01, time.time() + 1) == [round(stalls[1], 2)]  # the first ended before
