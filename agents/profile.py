"""The profile agent: folds each customer's events into the ``customer-state`` table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from schemas import EVENT_ADAPTER, CustomerState
from stream.counters import bump
from stream.dedup import Admission
from stream.profile import apply_event, to_profile
from stream.validate import Rejection, dead_letter
from stream.watermark import advance

if TYPE_CHECKING:
    from agents.app import Pulse


def register(pulse: Pulse) -> None:
    table = pulse.customer_state
    counters = pulse.profile_counters
    policy = pulse.settings.dedup_policy()
    maxima = pulse.event_time_maxima

    # concurrency=1: faust may commit past an in-flight message with more (faust #606).
    @pulse.app.agent(pulse.customer_events, name="profile", concurrency=1)
    async def profile(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            parsed = EVENT_ADAPTER.validate_json(event.value)
            customer_id = parsed.customer_id
            stored = table.get(customer_id)
            state = (CustomerState.model_validate_json(stored) if stored
                     else CustomerState(customer_id=customer_id))
            new_state, admission = apply_event(state, parsed, policy)
            table[customer_id] = new_state.model_dump_json().encode()
            bump(counters, f"profile.{admission.value}", message.partition)
            partition_key = f"p{message.partition}"
            stored_max = maxima.get(partition_key)
            new_max = advance(int(stored_max) if stored_max else None, parsed.event_time)
            if new_max is not None:
                maxima[partition_key] = str(new_max).encode()
            if admission is Admission.APPLIED:
                profile_record = to_profile(new_state, computed_at=datetime.now(UTC))
                await pulse.profiles.send(key=customer_id.encode(),
                                          value=profile_record.model_dump_json().encode())
            elif admission is Admission.TOO_LATE:
                late = Rejection("too_late", f"event_time: {parsed.event_time.isoformat()} is more "
                                 f"than {policy.lateness} before the customer's newest event "
                                 f"({state.last_event_at.isoformat() if state.last_event_at else '-'})")
                letter = dead_letter(event.value, event.key, late, stage="profile",
                                     now=datetime.now(UTC), topic=message.topic,
                                     partition=message.partition, offset=message.offset)
                await pulse.dead_letters.send(key=event.key, value=letter.model_dump_json().encode())
