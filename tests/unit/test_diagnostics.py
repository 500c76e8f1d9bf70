"""The SIGUSR1 task dump names the coroutine a stuck task is waiting in."""

from __future__ import annotations

import asyncio

from agents.diagnostics import task_stacks


async def _waits_for_ever(event: asyncio.Event) -> None:
    await event.wait()


def test_task_dump_shows_where_each_task_waits() -> None:
    async def scenario() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(_waits_for_ever(event), name="stuck-one")
        await asyncio.sleep(0)
        try:
            return task_stacks()
        finally:
            event.set()
            await task

    dump = asyncio.run(scenario())
    section = dump.split("--- stuck-one:")[1].split("---")[0]
    assert "_waits_for_ever" in section and "test_diagnostics.py" in section
    assert "wait (" in section  # down to the Event.wait it is suspended in
