"""Event-loop stalls: a worker whose loop does not run for ``PULSE_LOOP_STALL_SECONDS`` logs a
warning with the stack the loop's thread is in, and, once it runs again, how long it was held.
Every batch, timer and Redis write of the worker waits while the loop is held, so a stall is
latency for every event in flight (``docs/operations.md``, "Event-loop stalls").

A callback on the loop beats every :data:`BEAT_SECONDS`; a daemon thread checks the beat and,
when it is late by the threshold, takes the loop thread's current frame
(``sys._current_frames``). The cost is twenty loop callbacks and twenty thread wake-ups a second.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

BEAT_SECONDS = 0.05
STACK_FRAMES = 25  # innermost frames shown


class StallWatch:
    """Watches one event loop; :meth:`start` from a coroutine running on it."""

    def __init__(self, threshold: float, on_stall: Callable[[float], None] | None = None,
                 beat: float = BEAT_SECONDS) -> None:
        self.threshold = threshold
        self.on_stall = on_stall  # called on the loop with each stall's length, once it is over
        self.beat_seconds = beat
        self.last_beat = time.monotonic()
        self.reported = False  # the stall in progress has had its stack logged
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self.last_beat = time.monotonic()
        self._handle = self._loop.call_later(self.beat_seconds, self._beat)
        threading.Thread(target=self._watch, name="pulse-stall-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _beat(self) -> None:
        now = time.monotonic()
        held = now - self.last_beat - self.beat_seconds
        self.last_beat = now
        if held >= self.threshold:
            log.warning("event loop: held for %.2f s%s", held,
                        " (stack above)" if self.reported else " (the loop's thread held the GIL: no stack taken)")
            self.reported = False
            if self.on_stall is not None:
                self.on_stall(held)
        assert self._loop is not None
        self._handle = self._loop.call_later(self.beat_seconds, self._beat)

    def _watch(self) -> None:
        while not self._stop.wait(self.beat_seconds):
            late = time.monotonic() - self.last_beat - self.beat_seconds
            if late >= self.threshold and not self.reported:
                stack, self.reported = self.stack(), True
                log.warning("event loop: held for %.2f s so far, in:\n%s", late, stack)

    def stack(self) -> str:
        """Where the loop's thread is now (innermost :data:`STACK_FRAMES` frames)."""
        frame = sys._current_frames().get(self._thread_id)
        if frame is None:
            return "    (the loop's thread has no frame)\n"
        return "".join(traceback.format_stack(frame)[-STACK_FRAMES:])
