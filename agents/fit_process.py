"""The population fits (the purchase model, the behavioural clusters) run in a child process of
the worker, not in a thread of it.

In a thread, a fit shares the interpreter lock with the event loop. Each fit is CPU-bound
Python and numpy, so while it ran the loop got about half the CPU, and each of its waits on
Kafka or Redis waited again for the lock. Under `pulse bench` at half load every event sent
during the purchase model's 0.5 s refit came out 100-240 ms late, and those were the whole
p99 (docs/performance.md, "Latency").

One child, at a lower priority (:data:`NICENESS`), started at the first fit with the ``spawn``
method: a fresh interpreter that imports only the fit's modules (about 85 MB); the worker's
threads and open files are not copied, as ``fork`` would. The fits are pure functions of
picklable inputs, so the child needs nothing else. If it dies, that fit raises
:class:`FitProcessError` and the next one starts another.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
# The child's niceness above the worker's: on a busy machine the event loop and the broker get
# the CPU first, and a fit takes longer instead (it is background work, every 30 s).
NICENESS = 10


class FitProcessError(RuntimeError):
    """The fit's child process died before it answered (a new one is started for the next fit)."""


class FitProcess:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fit: Callable[..., T], *args: Any) -> T:
        """``fit(*args)`` in the child; its exceptions are raised here."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=os.nice, initargs=(NICENESS,))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fit, *args)
        except BrokenProcessPool as exc:
            self.close()
            raise FitProcessError(f"the fit's child process died ({exc}); the next fit starts another") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
