"""agents/fit_process.py: a fit runs in a child process (not the caller's) at a lower priority,
its errors come back as themselves, and a child that dies fails only its own fit."""

from __future__ import annotations

import asyncio
import os

import pytest

from agents.fit_process import NICENESS, FitProcess, FitProcessError
from stream.core.purchase import FitError


def _pid_and_square(value: int) -> tuple[int, int]:
    return os.getpid(), value * value


def _niceness() -> int:
    return os.nice(0)


def _refuse(reason: str) -> None:
    raise FitError(reason)


def _die() -> None:
    os._exit(3)


async def _calls() -> list[object]:
    fits = FitProcess()
    try:
        first = await fits.run(_pid_and_square, 7)
        second = await fits.run(_pid_and_square, 8)
        with pytest.raises(FitError, match="too few"):
            await fits.run(_refuse, "too few customers")
        with pytest.raises(FitProcessError, match="died"):
            await fits.run(_die)
        after = await fits.run(_pid_and_square, 9)
        niceness = await fits.run(_niceness)
    finally:
        fits.close()
    return [first, second, after, niceness]


def test_fits_run_in_one_child_process_and_a_dead_child_fails_only_its_fit() -> None:
    (pid, square), (pid_again, square_again), (new_pid, last), niceness = asyncio.run(_calls())
    assert (square, square_again, last) == (49, 64, 81)
    assert pid != os.getpid() and pid_again == pid  # one child, kept between fits
    assert new_pid not in (pid, os.getpid())  # the dead child was replaced
    assert niceness == min(os.nice(0) + NICENESS, 19)  # background work: the worker's loop comes first
