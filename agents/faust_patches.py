"""Every place Customer Pulse relies on faust-streaming internals, checked at start-up.

:func:`apply` (called by ``agents.app.create_app``) refuses to start on a faust-streaming
version these were not verified on, or when the method replaced below is not the source it
was written against, naming what differs: a silent mismatch would lose records.
``pyproject.toml`` pins the same range. What depends on Faust's private parts:

1. ``Recovery.on_recovery_completed`` is replaced (below).
2. ``faust.streams._current_event``: ``agents/batching.by_partition`` and ``make_current`` set it per partition.
3. ``Producer.buffer.put`` (wrapped on the instance by ``agents/batching.unacknowledged``) and
   the ``FutureMessage`` futures it is given, which Faust resolves when the broker acknowledges
   the record: ``agents/batching.durable`` waits on them.
4. ``Message.acked``: ``agents/batching.held`` sets it to keep a failed batch uncommitted.
5. ``Worker._on_sigusr1`` (``agents/__main__.PulseWorker``), and the worker's ``spinner``
   attribute (set to ``None``: see ``agents/__main__.py``).
6. ``agents/batching.take_batches`` follows ``Stream.take_events`` (its source is checked
   below) and uses ``Stream._enable_passive``, ``add_processor``, ``enable_acks`` and ``ack``.
7. ``AIOKafkaConsumerThread.getmany`` is wrapped (below, "The fetch fix").
8. ``Collection.key_serializer`` and the changelog topic's ``key_serializer``, set after a table is
   made and before its store opens (``agents/app.py``, ``agents/table_keys.py``).
9. ``agents/changelog.py`` writes the profile agent's tables as ``Table.__setitem__`` does, but
   sends their changelog records itself: ``Table.data`` (the store), the store's
   ``set_persisted_offset`` (what ``Collection._on_changelog_sent`` calls), the changelog topic's
   ``get_topic_name`` and the producer's ``_ensure_producer`` (the aiokafka producer).

The recovery fix: a faust-streaming recovery race that silently skips input records
(upstream faust-streaming/faust#596; the same family as #216, fixed for apps without tables
in #217). After table recovery, faust 0.15.3 ``Recovery.on_recovery_completed`` resumes the
stream partitions, awaits a seek to the committed offsets, and only then calls
``flow_control.resume()`` -- which *clears every stream queue*. Records fetched while the
seek was awaited are dropped from the queues although the consumer position has moved past
them: those events are never processed, and their offsets leave a gap in the acks. We saw
it in ``tests/integration/test_restart_recovery.py`` (a wiped RocksDB made the restart take
the recovery path; 3-4 records per partition were lost each time).

The fixed order clears the queues first, then seeks, then resumes the partitions, so
nothing can be fetched for them between the seek and the clear.

A second hole, seen when a worker joined a group in the middle of a replay
(``tests/integration/test_population_two_workers.py`` in CI): for a partition the group has
never committed, "seek to committed" does not move the fetcher, so records fetched and then
cleared from the queue above were skipped, the acks had a gap at the start, and the offset
was never committed -- the whole partition looked unprocessed for ever. Such partitions are
now sought to their earliest offset (what ``consumer_auto_offset_reset="earliest"`` promises).

The fetch fix: Faust hands the consumer thread its *live* set of active partitions
(``Consumer._active_partitions``), and aiokafka's ``Fetcher.fetched_records`` re-reads it
while it waits up to a second for data, treating an empty set as "every partition". When
recovery ends, the changelog partitions are paused and the stream partitions are not resumed
yet: the set is empty for a moment, and a fetch that started during recovery then drains the
records of *every* partition, stream partitions included. Faust's ``getmany`` drops those
(their partitions are not active), but aiokafka's position has moved past them. Most of the
time the seek to the committed offsets comes after and reads them again; when the fetch
completes after the seek, the records are gone. Seen in
``tests/integration/test_restart_recovery.py`` (wiped RocksDB, about one run in forty here,
with a delayed changelog): the restarted worker never received the rest of the input (aiokafka's
position at the end of each partition, Faust's read offset at the committed one), and with
newer records arriving it would have skipped the gap and committed past it. The wrapped
``getmany`` hands the thread a copy taken at the call, so a fetch only drains the partitions
that were active when it was asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from importlib.metadata import version
from typing import Any

import faust.streams
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.transport.producer import ProducerBuffer
from faust.types import Message
from faust.worker import Worker

VERIFIED_VERSIONS = ("0.15.3",)
# sha256 (first 16 hex digits) of the source of the replaced method in the verified versions
REPLACED_SOURCE = "6ef567acf072e46d"
# the same for Stream.take_events, which agents/batching.take_batches follows
FOLLOWED_SOURCE = "607d48aead118ba8"
# the same for AIOKafkaConsumerThread.getmany, wrapped below
WRAPPED_SOURCE = "26fc5fc9f3b667e1"
_PATCHED = "_pulse_recovery_fix"


class FaustPatchError(RuntimeError):
    """The installed faust-streaming is not the one these patches were verified on."""


def _unpatched(owner: type, name: str) -> Any:
    """The method as faust-streaming ships it, whether or not :func:`apply` has run."""
    return getattr(owner, "_pulse_original", getattr(owner, name))


def problems() -> list[str]:
    """What differs from the faust-streaming these patches were written for (empty: nothing)."""
    found = []
    installed = version("faust-streaming")
    if installed not in VERIFIED_VERSIONS:
        found.append(f"faust-streaming {installed} is installed; verified on {', '.join(VERIFIED_VERSIONS)}")
    for name, method, written_against in (
            ("Recovery.on_recovery_completed", _unpatched(Recovery, "on_recovery_completed"), REPLACED_SOURCE),
            ("Stream.take_events", faust.streams.Stream.take_events, FOLLOWED_SOURCE),  # agents/batching follows it
            ("AIOKafkaConsumerThread.getmany", _unpatched(AIOKafkaConsumerThread, "getmany"), WRAPPED_SOURCE)):
        digest = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16]
        if digest != written_against:
            found.append(f"{name} has changed (source {digest}, written against {written_against})")
    expected = {faust.streams: ("_current_event",), faust.streams.Stream: ("_enable_passive", "add_processor", "ack"),
                ProducerBuffer: ("put",), AIOKafkaProducer: ("_ensure_producer",),
                RocksDBStore: ("set_persisted_offset",), Collection: ("data", "_on_changelog_sent"),
                Message: ("acked",), Worker: ("_on_sigusr1",)}
    for owner, names in expected.items():
        found += [f"{getattr(owner, '__name__', owner)}.{name} is gone" for name in names
                  if not hasattr(owner, name) and name not in getattr(owner, "__slots__", ())]
    return found


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [
        asyncio.ensure_future(
            table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
        )
        for table in self.tables.values()
    ]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
        )
        return
    # 1. clear stale queued records (resume() clears every stream queue) ...
    self.app.flow_control.resume()
    if assignment:
        # 2. ... seek the still-paused stream partitions to their committed offsets ...
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        # 2b. ... and those this group never committed to their earliest offset: the seek to
        # committed offsets leaves them where the fetcher was, past records dropped in step 1.
        await _seek_uncommitted_to_earliest(self, consumer, assignment)
    self.completed.set()
    # 3. ... and only now let records of those partitions be fetched.
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


async def _seek_uncommitted_to_earliest(self: Any, consumer: Any, assignment: set[Any]) -> None:
    uncommitted = sorted(tp for tp in assignment
                         if not self._is_changelog_tp(tp) and not consumer._committed_offset.get(tp))
    if not uncommitted:
        return
    earliest = await consumer.earliest_offsets(*uncommitted)
    for tp in uncommitted:
        await consumer.seek(tp, earliest[tp])
    self.log.info(f"Seek {len(uncommitted)} stream partitions without a committed offset to their earliest offset")


async def _getmany(self: Any, active_partitions: set[Any] | None, timeout: float) -> Any:
    """``AIOKafkaConsumerThread.getmany`` with this moment's active partitions (see the module
    doc); ``None`` (a client-only app) still means every partition."""
    partitions = None if active_partitions is None else frozenset(active_partitions)
    if partitions is not None and not partitions:  # aiokafka would read an empty set as "every partition"
        return {}
    return await AIOKafkaConsumerThread._pulse_original(self, partitions, timeout)  # type: ignore[attr-defined]


def apply() -> None:
    """Check the installed faust-streaming, then install the fixed method once (idempotent)."""
    found = problems()
    if found:
        raise FaustPatchError(
            "agents/faust_patches.py was not written for this faust-streaming: " + "; ".join(found)
            + ". Install the pinned version (pip install -e .) or re-verify the patches and update "
            "VERIFIED_VERSIONS and REPLACED_SOURCE.")
    if getattr(Recovery, _PATCHED, False):
        return
    Recovery._pulse_original = Recovery.on_recovery_completed  # type: ignore[attr-defined]
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    AIOKafkaConsumerThread._pulse_original = AIOKafkaConsumerThread.getmany  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.getmany = _getmany  # type: ignore[method-assign]
    setattr(Recovery, _PATCHED, True)
