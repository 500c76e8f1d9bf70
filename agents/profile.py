"""The profile agent: folds each customer's events into the ``customer-state`` table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from schemas import EVENT_ADAPTER, CustomerState
from stream.profile import apply_event, to_profile

if TYPE_CHECKING:
    from agents.app import Pulse


def register(pulse: Pulse) -> None:
    table = pulse.customer_state
    max_ids = pulse.settings.dedup_max_ids

    # concurrency=1: faust may commit past an in-flight message with more (faust #606).
    @pulse.app.agent(pulse.customer_events, name="profile", concurrency=1)
    async def profile(stream):  # type: ignore[no-untyped-def]
        async for raw in stream:
            event = EVENT_ADAPTER.validate_json(raw)
            customer_id = event.customer_id
            stored = table.get(customer_id)
            state = (CustomerState.model_validate_json(stored) if stored
                     else CustomerState(customer_id=customer_id))
            new_state, applied = apply_event(state, event, max_ids=max_ids)
            table[customer_id] = new_state.model_dump_json().encode()
            if applied:
                profile_record = to_profile(new_state, computed_at=datetime.now(UTC))
                await pulse.profiles.send(key=customer_id.encode(),
                                          value=profile_record.model_dump_json().encode())
