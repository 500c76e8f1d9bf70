"""The Faust patches refuse a faust-streaming they were not verified on."""

from __future__ import annotations

import asyncio

import pytest

from agents import faust_patches


def test_the_pinned_faust_streaming_passes_and_the_fix_is_installed_once() -> None:
    assert faust_patches.problems() == []
    faust_patches.apply()
    faust_patches.apply()
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert Recovery.on_recovery_completed is faust_patches._on_recovery_completed
    assert AIOKafkaConsumerThread.getmany is faust_patches._getmany
    assert faust_patches.problems() == []  # checked against the originals, not the replacements


def test_another_version_or_a_changed_method_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "VERIFIED_VERSIONS", ("0.99.0",))
    monkeypatch.setattr(faust_patches, "REPLACED_SOURCE", "0000000000000000")
    monkeypatch.setattr(faust_patches, "FOLLOWED_SOURCE", "0000000000000000")
    found = faust_patches.problems()
    assert any("verified on 0.99.0" in problem for problem in found)
    assert any("Recovery.on_recovery_completed has changed" in problem for problem in found)
    assert any("Stream.take_events has changed" in problem for problem in found)
    monkeypatch.setattr(faust_patches, "WRAPPED_SOURCE", "0000000000000000")
    assert any("AIOKafkaConsumerThread.getmany has changed" in problem for problem in faust_patches.problems())
    with pytest.raises(faust_patches.FaustPatchError, match="was not written for this faust-streaming"):
        faust_patches.apply()


def test_the_consumer_thread_fetches_the_partitions_active_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The set handed to the consumer thread does not change when the caller's set does, and an
    empty set is not handed on (aiokafka reads it as "every partition")."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    faust_patches.apply()
    seen: list[set[str] | None] = []
    active = {"events-0", "events-1"}

    async def fetch(self: object, partitions: frozenset[str] | None, timeout: float) -> dict[str, list[int]]:
        active.clear()  # the main thread pauses everything while the thread waits for data
        await asyncio.sleep(0)
        seen.append(None if partitions is None else set(partitions))
        return {tp: [1] for tp in partitions or ("every",)}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_pulse_original", fetch)
    thread = object.__new__(AIOKafkaConsumerThread)
    assert asyncio.run(thread.getmany(active, 1.0)) == {"events-0": [1], "events-1": [1]}
    assert seen == [{"events-0", "events-1"}]
    assert asyncio.run(thread.getmany(set(), 1.0)) == {}  # not "every partition"
    assert seen == [{"events-0", "events-1"}]
    assert asyncio.run(thread.getmany(None, 1.0)) == {"every": [1]}  # a client-only app asks for all
