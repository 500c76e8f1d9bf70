"""The processor's handling of anonymous ids (``stream/core/identity.py``): their browsing events,
``identify`` links, unlink requests, and merges at the customer's partition. A mixin of
:class:`stream.core.processor.Processor`, which routes the records here and provides the helpers
declared below."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from schemas import EVENT_ADAPTER, CustomerState, Event
from stream.core.dedup import Admission, DedupPolicy
from stream.core.fold import apply_event
from stream.core.identity import (
    ALIAS_EVENT_KEY,
    MERGE_KEY,
    IdentityRecord,
    is_placeholder,
    link,
    merged,
    new_identity,
    parse_unlink_request,
    placeholder_rejection,
    unlink,
)
from stream.core.validate import Rejection
from stream.core.work import Effects, Record, Work

log = logging.getLogger(__name__)

class Stitching:
    """Identity stitching for the processor (see the module doc)."""

    policy: DedupPolicy
    link_limit: int
    owns: Callable[[str, int], bool]

    # provided by the processor
    def _dead_letter(self, record: Record, rejection: Rejection, effects: Effects, stage: str = "profile",
                     keep_payload: bool = True) -> None:
        raise NotImplementedError

    def _suppressed(self, record: Record, subject: str, event: Event, work: Work, effects: Effects) -> bool:
        raise NotImplementedError

    def _too_late(self, record: Record, event: Event, state: CustomerState, admission: Admission,
                  effects: Effects) -> None:
        raise NotImplementedError

    def _apply(self, record: Record, event: Event, work: Work, effects: Effects, alias: bool = False) -> None:
        raise NotImplementedError

    def _settle(self, state: CustomerState, new_state: CustomerState, reason: str, at: datetime, partition: int,
                work: Work, effects: Effects, event: Event | None = None) -> None:
        raise NotImplementedError

    def _on_anonymous(self, record: Record, event: Event, work: Work, effects: Effects) -> None:
        """A browsing event before login, at the anonymous id's partition: folded into the id's own
        activity, and forwarded to the customer it is linked to."""
        anonymous_id, partition = event.anonymous_id, record.partition
        assert anonymous_id is not None
        if is_placeholder(anonymous_id):  # every visitor of a broken tag would pool here
            work.count("identity.anonymous_placeholder", partition)
            self._dead_letter(record, placeholder_rejection("anonymous_id", anonymous_id), effects)
            return
        identity = work.identity(anonymous_id)
        if identity is None:
            if self._suppressed(record, anonymous_id, event, work, effects):
                return
            identity = new_identity(anonymous_id)
        if event.consent is not None and event.consent.analytics is False:
            work.count("privacy.no_consent", partition)
            work.delete_identity(anonymous_id)
            return
        activity, admission = apply_event(identity.activity, event, self.policy)
        work.count(f"identity.anonymous_{admission.value}", partition)
        work.put_identity(identity.model_copy(update={"activity": activity}))
        if admission is not Admission.APPLIED:
            self._too_late(record, event, identity.activity, admission, effects)
            return
        work.saw_event_time(partition, event.event_time)
        customer_id = identity.linked_to
        if customer_id is not None:  # the customer's now: judged late only here, where its events arrive in order
            aliased = event.model_copy(update={"customer_id": customer_id})
            if self.owns(customer_id, partition):
                self._apply(record, aliased, work, effects, alias=True)
            else:
                effects.forwards.append((customer_id, ALIAS_EVENT_KEY, EVENT_ADAPTER.dump_json(aliased)))

    def _identify(self, record: Record, event: Event, work: Work, effects: Effects) -> None:
        anonymous_id, customer_id, partition = event.anonymous_id, event.customer_id, record.partition
        work.count("identity.identify", partition)
        for name, value in (("anonymous_id", anonymous_id), ("customer_id", customer_id)):
            if is_placeholder(value):
                work.count("identity.rejected.placeholder_id", partition)
                self._dead_letter(record, placeholder_rejection(name, value), effects)
                return
        assert anonymous_id is not None
        outcome = link(work.identity(anonymous_id) or new_identity(anonymous_id), customer_id, self.link_limit)
        if isinstance(outcome, Rejection):
            work.count(f"identity.rejected.{outcome.reason}", partition)
            self._dead_letter(record, outcome, effects)
            return
        identity, activity = outcome
        if activity is None:
            work.count("identity.already_linked", partition)
            return
        work.put_identity(identity)
        work.count("identity.linked", partition)
        self._send_identity(record, IdentityRecord("merge", anonymous_id, customer_id, activity, event.event_time),
                            work, effects)

    def _on_unlink(self, record: Record, work: Work, effects: Effects) -> None:
        anonymous_id, requested_at = parse_unlink_request(record.value)
        identity = work.identity(anonymous_id)
        unlinked, customer_id = unlink(identity) if identity is not None else (None, None)
        if unlinked is None or customer_id is None:
            work.count("identity.unlink_not_linked", record.partition)
            log.info("unlink: anonymous id %r is not linked to a customer", anonymous_id)
            return
        work.put_identity(unlinked)
        work.count("identity.unlinked", record.partition)
        self._send_identity(record, IdentityRecord("unmerge", anonymous_id, customer_id, unlinked.activity,
                                                   requested_at), work, effects)

    def _send_identity(self, record: Record, identity: IdentityRecord, work: Work, effects: Effects) -> None:
        if self.owns(identity.customer_id, record.partition):
            self._on_identity(record, identity, work, effects)
        else:
            effects.forwards.append((identity.customer_id, MERGE_KEY, identity.to_bytes()))

    def _on_identity(self, record: Record, identity: IdentityRecord, work: Work, effects: Effects) -> None:
        """A merge or unmerge at the customer's partition; a redelivered one changes nothing."""
        partition = record.partition
        state = work.state(identity.customer_id)
        linked = identity.anonymous_id in state.aliases
        if linked == (identity.kind == "merge"):
            work.count(f"identity.{identity.kind}_again", partition)
            return
        if state.last_event_at is None and work.suppression(identity.customer_id) is not None:
            work.count("profile.suppressed", partition)  # an erased customer is not profiled again by a login
            return
        work.count(f"identity.{identity.kind}d", partition)
        self._settle(state, merged(state, identity), f"identity:{identity.kind}", identity.at, partition, work,
                     effects)
