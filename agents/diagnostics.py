"""What a stuck worker is waiting for: ``kill -USR1 <worker pid>`` logs the stack of every
asyncio task (each agent, timer and faust service) without stopping anything. (mode's own
SIGUSR1 handler printed the threads' frames with every local: megabytes, and not the
coroutines, which is where a stuck worker waits; ``agents/__main__.py`` replaces it.)

A worker whose consumer lag stops falling while its log is quiet is usually one coroutine
awaiting something that never comes; this shows which one and where.
"""

from __future__ import annotations

import asyncio
import io
import logging
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def task_stacks() -> str:
    """Every task of the running loop with the frames it is suspended in."""
    out = io.StringIO()
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    out.write(f"{len(tasks)} asyncio tasks (those only awaiting another task left out)\n")
    for task in tasks:
        coro = task.get_coro()
        if getattr(coro, "__qualname__", "") == "Service._execute_task":
            continue  # mode's wrapper: the task it awaits is listed itself
        out.write(f"--- {task.get_name()}: {getattr(coro, '__qualname__', coro)!s}\n")
        frames = [(f.f_code.co_filename, lineno, f.f_code.co_name) for f, lineno in _suspended_at(task)]
        out.write("".join(f"    {name} ({path}:{line})\n" for path, line, name in frames))
    return out.getvalue()


def _suspended_at(task: asyncio.Task[Any]) -> list[tuple[FrameType, int]]:
    """The chain of coroutine frames a task is suspended in, outermost first."""
    chain: list[tuple[FrameType, int]] = []
    coro: Any = task.get_coro()
    while coro is not None and len(chain) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        chain.append((frame, frame.f_lineno))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


def agent_stacks(app: Any) -> str:
    """Where each agent's actor is suspended (faust's own formatting of the actor coroutine)."""
    out = io.StringIO()
    for name, agent in sorted(app.agents.items()):
        for trace in agent.actor_tracebacks():
            out.write(f"--- agent {name}\n{trace}")
    return out.getvalue()


def log_task_stacks(app: Any) -> None:
    log.warning("task dump (SIGUSR1):\n%s%s", agent_stacks(app), task_stacks())
