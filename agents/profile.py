"""The profile agent: folds each customer's events into the ``customer-state`` table, keeps
their tags, and applies time-driven transitions when a sweep tick arrives (ticks travel in
the same partitions as the events, so a sweep never races an update)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka.partitioner import DefaultPartitioner

from agents.app import send_to_dlq
from schemas import EVENT_ADAPTER, Alert, ChurnLabel, CustomerState, TagChange
from stream.churn import assess
from stream.counters import bump
from stream.dedup import Admission
from stream.model import ModelParams
from stream.profile import apply_event, to_profile
from stream.rfm import Cuts
from stream.sweep import (
    RESYNC_KEY,
    TICK_KEY,
    bucket_key,
    cursor_key,
    decode_members,
    encode_members,
    filing_bucket,
    hour_bucket,
    with_member,
)
from stream.tagging import compute_tags, next_boundary, tag_changes
from stream.validate import Rejection
from stream.watermark import advance

if TYPE_CHECKING:
    from agents.app import Pulse

partitioner = DefaultPartitioner()  # the producers' partitioner: which partition owns a customer

log = logging.getLogger(__name__)


def register(pulse: Pulse) -> None:
    table = pulse.customer_state
    counters = pulse.profile_counters
    maxima = pulse.event_time_maxima
    index = pulse.sweep_index
    rules = pulse.rules
    policy = pulse.settings.dedup_policy()
    book = pulse.population
    churn = pulse.settings.churn_config()
    model_in_use = pulse.settings.churn_model == "auto"  # shadow: the model learns, the heuristic scores
    by_population = rules.scoring.mode == "population"

    def scorer() -> ModelParams | None:
        return pulse.model if model_in_use else None

    def cuts(partition: int) -> Cuts | None:
        return book.cuts_for(partition) if by_population else None

    def load(customer_id: str) -> CustomerState:
        stored = table.get(customer_id)
        return CustomerState.model_validate_json(stored) if stored else CustomerState(customer_id=customer_id)

    def file_boundary(state: CustomerState, partition: int, old: datetime | None = None) -> None:
        stored_cursor = index.get(cursor_key(partition))
        cursor = int(stored_cursor) if stored_cursor else None
        if old is not None:
            # Unfile from the old hour, so sweeps read only due customers.
            old_key = bucket_key(filing_bucket(old, cursor), partition)
            remaining = [m for m in decode_members(index.get(old_key)) if m != state.customer_id]
            if remaining:
                index[old_key] = encode_members(remaining)
            elif old_key in index:
                del index[old_key]
        if state.next_boundary_at is None:
            return
        bucket = filing_bucket(state.next_boundary_at, cursor)
        if cursor is None:
            index[cursor_key(partition)] = str(bucket - 1).encode()
        key = bucket_key(bucket, partition)
        index[key] = with_member(index.get(key), state.customer_id)

    async def publish(state: CustomerState, changes: list[TagChange], alerts: Sequence[Alert] = (),
                      labels: Sequence[ChurnLabel] = ()) -> None:
        key = state.customer_id.encode()
        profile = to_profile(state, datetime.now(UTC), churn.threshold)
        await pulse.profiles.send(key=key, value=profile.model_dump_json().encode())
        for change in changes:
            await pulse.tag_changes.send(key=key, value=change.model_dump_json().encode())
        for alert in alerts:
            await pulse.alerts.send(key=key, value=alert.model_dump_json().encode())
        for label in labels:  # one partition: the single trainer reads them in order
            await pulse.churn_labels.send(key=key, value=label.model_dump_json().encode(), partition=0)

    async def on_event(event: Any) -> None:
        message = event.message
        parsed = EVENT_ADAPTER.validate_json(event.value)
        state = load(parsed.customer_id)
        new_state, admission = apply_event(state, parsed, policy)
        bump(counters, f"profile.{admission.value}", message.partition)
        partition_key = f"p{message.partition}"
        stored_max = maxima.get(partition_key)
        new_max = advance(int(stored_max) if stored_max else None, parsed.event_time)
        if new_max is not None:
            maxima[partition_key] = str(new_max).encode()
        if admission is Admission.APPLIED:
            if by_population:
                book.update(message.partition, parsed.customer_id, state, new_state)
            now = max(t for t in (new_state.last_event_at, state.tags.as_of) if t is not None)
            tags = compute_tags(new_state, now, rules, cuts(message.partition))
            changes = tag_changes(new_state.customer_id, state.tags, tags, reason=f"event:{parsed.type}",
                                  event_time=parsed.event_time, version=new_state.revision)
            assessed = assess(state, new_state.model_copy(update={"tags": tags}), now, churn, scorer())
            boundary = next_boundary(assessed.state, now, rules, churn, scorer())
            new_state = assessed.state.model_copy(update={"next_boundary_at": boundary})
            table[new_state.customer_id] = new_state.model_dump_json().encode()
            if boundary != state.next_boundary_at:
                file_boundary(new_state, message.partition, old=state.next_boundary_at)
            await publish(new_state, changes, assessed.alerts, assessed.labels)
            if assessed.alerts:
                bump(counters, "alerts.raised", message.partition, by=len(assessed.alerts))
            if by_population and book.due(message.partition, pulse.settings.rescore_seconds):
                await rescore(message.partition)
            return
        table[new_state.customer_id] = new_state.model_dump_json().encode()
        if admission is Admission.TOO_LATE:
            late = Rejection("too_late", f"event_time: {parsed.event_time.isoformat()} is more than "
                             f"{policy.lateness} before the customer's newest event "
                             f"({state.last_event_at.isoformat() if state.last_event_at else '-'})")
            await send_to_dlq(pulse, event, late, stage="profile")

    async def on_tick(event: Any) -> None:
        partition = event.message.partition
        if by_population:
            await rescore(partition)
        due = datetime.fromisoformat(json.loads(event.value)["now"]) - policy.lateness
        stored_cursor = index.get(cursor_key(partition))
        if not stored_cursor:
            return  # nothing filed yet
        cursor, due_bucket = int(stored_cursor), hour_bucket(due)
        for bucket in range(cursor + 1, due_bucket + 1):
            key = bucket_key(bucket, partition)
            members = decode_members(index.get(key))
            if not members:
                continue
            waiting = []
            for customer_id in members:
                bump(counters, "sweeper.index_reads", partition)
                state = load(customer_id)
                boundary = state.next_boundary_at
                if boundary is None or filing_bucket(boundary, cursor) != bucket:
                    continue  # moved on since it was filed here
                if boundary > due:
                    waiting.append(customer_id)  # same hour, not yet due
                    continue
                bump(counters, "sweeper.visited", partition)
                swept = await sweep_customer(state, due, partition)
                if swept.next_boundary_at is not None and filing_bucket(swept.next_boundary_at, cursor) == bucket:
                    waiting.append(customer_id)  # its next boundary is later in this same hour
            if waiting:
                index[key] = encode_members(waiting)
            elif key in index:
                del index[key]
        # the due hour may still receive boundaries: sweep it again next time
        index[cursor_key(partition)] = str(max(cursor, due_bucket - 1)).encode()

    async def rescore(partition: int) -> None:
        # Move this partition to the merged population's cut points: only the customers
        # between an old and a new cut can change score (see agents/population.py).
        old, new = book.cuts_for(partition), book.merged_cuts()
        if old == new:
            book.set_applied(partition, new)
            return
        moved = book.index(partition).members_between(old.moved(new))
        bump(counters, "rfm.rescore_visits", partition, by=len(moved))
        rescored = 0
        for customer_id in sorted(moved):
            state = load(customer_id)
            as_of = state.tags.as_of or state.last_event_at
            assert as_of is not None  # indexed customers have purchased, so they have been tagged
            tags = compute_tags(state, as_of, rules, new)
            if tags.tag_values() == state.tags.tag_values():
                continue
            revision = state.revision + 1
            changes = tag_changes(customer_id, state.tags, tags, reason="population", event_time=as_of,
                                  version=revision)
            moved_state = state.model_copy(update={"tags": tags, "revision": revision})
            assessed = assess(state, moved_state, as_of, churn, scorer())
            table[customer_id] = assessed.state.model_dump_json().encode()
            await publish(assessed.state, changes, assessed.alerts, assessed.labels)
            rescored += 1
        bump(counters, "rfm.rescored", partition, by=rescored)
        book.set_applied(partition, new)

    async def sweep_customer(state: CustomerState, due: datetime, partition: int) -> CustomerState:
        changes: list[TagChange] = []
        alerts: list[Alert] = []
        labels: list[ChurnLabel] = []
        current, boundary = state, state.next_boundary_at
        while boundary is not None and boundary <= due:
            new_tags = compute_tags(current, boundary, rules, cuts(partition))
            changes += tag_changes(current.customer_id, current.tags, new_tags, reason="time", event_time=boundary,
                                   version=current.revision + 1)
            stepped = current.model_copy(update={"tags": new_tags, "revision": current.revision + 1})
            assessed = assess(current, stepped, boundary, churn, scorer())
            alerts += assessed.alerts
            labels += assessed.labels
            current = assessed.state
            boundary = next_boundary(current, boundary, rules, churn, scorer())
        bump(counters, "sweeper.transitions", partition, by=len(changes))
        bump(counters, "alerts.raised", partition, by=len(alerts))
        swept = current.model_copy(update={"next_boundary_at": boundary})
        table[state.customer_id] = swept.model_dump_json().encode()
        file_boundary(swept, partition)
        await publish(swept, changes, alerts, labels)
        return swept

    async def on_resync(event: Any) -> None:
        # Requested by an operator (`pulse resync`): re-publish every profile of this
        # partition. Redis keeps newer versions and fills in missing ones.
        partition, partitions = event.message.partition, pulse.settings.partitions
        every = list(range(partitions))
        published = 0
        for customer_id, stored in list(table.items()):
            if partitioner(customer_id.encode(), every, every) != partition:
                continue
            state = CustomerState.model_validate_json(stored)
            await publish(state, [])
            published += 1
        bump(counters, "resync.published", partition, by=published)
        log.info("resync: re-published %d profiles of partition %d", published, partition)

    async def on_failure(event: Any, exc: Exception) -> None:
        # A bug or unreadable state must not stop the worker or lose the record: it goes to
        # the dead-letter topic with the error, and processing continues.
        log.exception("profile: record at %s[%s]@%s failed", event.message.topic, event.message.partition,
                      event.message.offset)
        bump(counters, "profile.failed", event.message.partition)
        failure = Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:2000])
        await send_to_dlq(pulse, event, failure, stage="profile")

    # concurrency=1: faust may commit past an in-flight message with more (faust #606).
    @pulse.app.agent(pulse.customer_events, name="profile", concurrency=1)
    async def profile(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            try:
                if event.key == TICK_KEY:
                    await on_tick(event)
                elif event.key == RESYNC_KEY:
                    await on_resync(event)
                else:
                    await on_event(event)
            except Exception as exc:  # noqa: BLE001 - see on_failure
                await on_failure(event, exc)
