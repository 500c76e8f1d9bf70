"""How the stateful agents take batches without losing anything.

- :func:`take_batches` is faust's ``Stream.take_events`` (0.15.3) with one change: a batch
  closes as soon as its newest record is the last one the consumer has fetched of its
  partition (``caught_up``), not only when it is full or its window has passed. At low load
  an event then waits for the batch ahead of it, not for a whole window besides; under a
  backlog the consumer is never caught up and batches fill as before (docs/performance.md,
  "Latency").
- ``take_batches``, as ``stream.take_events``, acknowledges a batch after the loop body, but
  also when the body fails or is cancelled (its ``finally``). :func:`held` marks such a
  batch's messages as already acknowledged, so the consumer never records their offsets and
  they are read again.
- Faust tables choose the RocksDB instance and the changelog partition from the *current
  event*; a batch mixes partitions, so :func:`by_partition` makes an event of each
  partition current while that partition's records are processed, and :func:`make_current`
  again while its table writes are stored. Both set only the
  context variable of the agent's own task: ``Stream._set_current_event`` would also move
  ``stream.current_event``, which ``take_events`` reads to collect the *next* batch (that
  lost one event and repeated another per batch).
- A table write is only queued in Faust's producer buffer; :func:`durable` waits until every
  changelog record queued so far is acknowledged by the broker, so a batch is never
  acknowledged before its effects would survive a crash. It waits on the records themselves
  (:func:`unacknowledged`), not on the buffer draining: the buffer hands a record to the
  producer in a task of its own, which may wait (for metadata, say) after the record has left
  the buffer and before the producer has it. Waiting for an empty buffer and a producer flush
  let a batch be acknowledged, and its offsets committed at a SIGTERM, while a changelog record
  of it was still in that task, which the stop then cancelled.
- A batch that fails after it was taken (the broker refused its outputs, or its table
  writes were not acknowledged) must not be skipped: Faust would restart the agent at the
  *next* batch, and the failed one's events would come again only after a restart, behind
  later events of the same customers. :func:`exit_worker` ends the worker instead (exit
  code :data:`EXIT_BATCH_FAILED`); restarted, it resumes at the failed batch, whose offsets
  were never committed. aiokafka retries what is worth retrying (a broker restart, a leader
  change) inside a send, so what reaches here does not go away by itself (a record too large
  for the topic, a denied write, a deleted topic).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from faust.streams import _current_event

DURABLE_TIMEOUT_SECONDS = 60.0
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: a supervisor (systemd Restart=on-failure) restarts the worker

log = logging.getLogger(__name__)


class NotDurable(RuntimeError):
    """The producer stopped (or stalled) before a batch's writes were acknowledged."""


async def take_batches(stream: Any, max_: int, within: float,
                       caught_up: Callable[[Any], bool]) -> AsyncIterator[list[Any]]:
    """Yield the stream's events in batches of at most ``max_``: a batch closes when it is full,
    when ``caught_up(message)`` holds for the message just added, or ``within`` seconds after
    the previous batch. Each batch is acknowledged when the loop body asks for the next one
    (or fails: see :func:`held`). The lines not about ``ready`` are ``Stream.take_events``'."""
    events: list[Any] = []
    ready = asyncio.Event()  # full, or the consumer has nothing newer of the last record's partition
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # a batch is being processed: wait until it is acknowledged
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            events.append(event)
            if len(events) >= max_:
                ready.set()
                consumed.clear()
                await stream.wait(consumed)  # strictly at most max_ per batch
            elif caught_up(event.message):
                ready.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # the batch is acknowledged below, after the loop body
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    while not stream.should_stop:
        await stream.wait_for_stopped(ready, timeout=within)
        if not events:
            ready.clear()
            continue
        consuming = asyncio.get_running_loop().create_future()
        try:
            yield list(events)
        finally:
            for event in events:
                await stream.ack(event)
            events.clear()
            if not consuming.done():
                consuming.set_result(None)
            ready.clear()
            consumed.set()


def caught_up_with(consumer: Any) -> Callable[[Any], bool]:
    """``caught_up`` for :func:`take_batches`: the message is the newest the consumer has
    fetched of its partition (its high watermark, as of the last fetch response, is the next
    offset). Unknown (a partition being reassigned): not caught up, the window decides."""
    def caught_up(message: Any) -> bool:
        try:
            highwater = consumer.highwater(message.tp)
        except Exception:  # noqa: BLE001 - unassigned (aiokafka asserts), not started, mid-rebalance: the window decides
            return False
        return highwater is not None and message.offset + 1 >= highwater
    return caught_up


def behind(group: Sequence[Any], caught_up: Callable[[Any], bool]) -> bool:
    """Whether a partition's records in a batch stop short of the newest fetched of any of its
    topics (``caught_up``: :func:`caught_up_with`): the raw events and the forwarded ones
    (``customer-events``: ticks, forwards) arrive interleaved, so the last record of the group
    alone does not say whether the raw events are caught up."""
    last = {event.message.tp: event.message for event in group}
    return not all(caught_up(message) for message in last.values())


def by_partition(events: Sequence[Any]) -> Iterator[tuple[int, list[Any]]]:
    """Yield ``(partition, events)`` in partition order, each with its last event current."""
    groups: dict[int, list[Any]] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    for partition in sorted(groups):
        make_current(groups[partition][-1])
        yield partition, groups[partition]


def make_current(event: Any) -> None:
    """Make ``event`` the agent task's current event: table writes go to its partition."""
    _current_event.set(weakref.ref(event))


@contextmanager
def held(events: Sequence[Any]) -> Iterator[None]:
    """On any failure or cancellation inside, keep the batch unacknowledged (see module doc)."""
    try:
        yield
    except BaseException:
        for event in events:
            event.message.acked = True  # the consumer then skips it: its offset is never committed
        raise


async def gather_sends(sends: Sequence[Awaitable[Any]]) -> None:
    """Wait for the broker's acknowledgement of every record sent."""
    if sends:
        await asyncio.gather(*sends)


_UNACKNOWLEDGED = "_pulse_unacknowledged"


def unacknowledged(buffer: Any) -> set[Any]:
    """The records put in Faust's producer ``buffer`` (table changelog records, as
    ``FutureMessage`` futures) that the broker has not acknowledged or refused yet. Tracking
    starts at the first call (the profile agent makes it before its first batch): the call wraps
    the buffer's ``put``."""
    tracked: set[Any] | None = getattr(buffer, _UNACKNOWLEDGED, None)
    if tracked is None:
        pending: set[Any] = set()
        put = buffer.put

        def tracking_put(fut: Any) -> None:
            pending.add(fut)
            fut.add_done_callback(pending.discard)
            put(fut)

        buffer.put = tracking_put
        setattr(buffer, _UNACKNOWLEDGED, pending)
        tracked = pending
    return tracked


async def durable(app: Any, timeout: float = DURABLE_TIMEOUT_SECONDS) -> None:
    """Wait until every table changelog record queued so far is acknowledged by the broker;
    :class:`NotDurable` if one was refused or they are not all acknowledged in ``timeout``."""
    waiting = list(unacknowledged(app.producer.buffer))
    if not waiting:
        return
    done, not_done = await asyncio.wait(waiting, timeout=timeout)
    if not_done:
        raise NotDurable(f"{len(not_done)} table changelog records not acknowledged in {timeout:.0f} s "
                         "(producer stopping or stalled)")
    for fut in done:
        if fut.cancelled():
            raise NotDurable("a table changelog record was cancelled before it was sent")
        if fut.exception() is not None:
            raise NotDurable(f"a table changelog record was refused: {fut.exception()!r}")


def exit_worker(agent: str, exc: BaseException) -> NoReturn:
    """End the worker process after a failed batch (see module doc), at once: a graceful stop
    would wait for the events already fetched behind the batch to be processed. What is
    durable is what a SIGKILL leaves (tests/integration/test_crashes.py): every earlier
    batch, and nothing committed from this one on."""
    log.critical("%s: a batch failed after it was processed (%s: %s); the worker exits (code %d) so that "
                 "it does not go on without it. Its offsets are not committed: restarted, the worker "
                 "processes it again", agent, type(exc).__name__, exc, EXIT_BATCH_FAILED)
    logging.shutdown()  # flush the log first
    os._exit(EXIT_BATCH_FAILED)


def _not_buffer_chatter(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    return not message.startswith(("producer buffer full size", "producer flush took"))


def quiet_producer_buffer_logs() -> None:
    """A batch's table writes fill Faust's producer buffer (100 records) by design, and Faust
    logs a warning each time; :func:`durable` waits for the buffer anyway."""
    logging.getLogger("faust.transport.producer").addFilter(_not_buffer_chatter)
