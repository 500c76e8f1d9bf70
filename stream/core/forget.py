"""What an erasure (``pulse forget``, or withdrawn consent) does to a batch's tables and
effects, called by :class:`stream.core.processor.Processor` (the request, the suppression
marker and the receipt's parts are in ``stream/core/erasure.py``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from schemas import CustomerState
from stream.core.erasure import ERASE_KEY, Erasure, ErasureRequest, Suppression, resumes
from stream.core.sweep import file_boundary
from stream.core.validate import Rejection
from stream.core.work import Effects, Work

log = logging.getLogger(__name__)


class Population(Protocol):
    def update(self, partition: int, customer_id: str, old: CustomerState, new: CustomerState) -> None: ...


def erase(request: ErasureRequest, partition: int, work: Work, effects: Effects, population: Population | None,
          now: datetime) -> None:
    """Remove the customer's state (a tombstone), sweep entry and population share, file the
    suppression marker, drop what the batch would still publish about them, and hand the rest
    to the Redis sink (``effects.erasures``). The request may name an anonymous id (its record in
    the identities table goes); a customer's aliases are erased too, each by a request of its own
    (``{request id}.alias-{n}``) at the partition that owns it."""
    customer_id = request.customer_id
    state = work.state(customer_id)
    if population is not None:
        population.update(partition, customer_id, state, CustomerState(customer_id=customer_id))
    if state.next_boundary_at is not None:
        file_boundary(work.index, partition, customer_id, None, old=state.next_boundary_at)
    work.delete(customer_id)
    had_identity = work.delete_identity(customer_id)  # the request may name an anonymous id
    work.suppress(customer_id, Suppression(now, request.request_id))
    for number, alias in enumerate(state.aliases, 1):  # the whole identity cluster: each alias at its owner
        alias_request = ErasureRequest(f"{request.request_id}.alias-{number}", alias, request.requested_at)
        effects.forwards.append((alias, ERASE_KEY, alias_request.to_bytes()))
    effects.forget(customer_id)
    effects.erasures.append(Erasure(request.request_id, customer_id, request.requested_at.isoformat(), partition,
                                    now.isoformat(), had_state=state.last_event_at is not None or had_identity))
    work.count("privacy.erased", partition)
    log.info("erasure %s: state, sweep entry and population share removed in partition %d",
             request.request_id, partition)


def admit_after_erasure(work: Work, partition: int, customer_id: str, event_time: datetime,
                        analytics_consent: bool | None) -> Rejection | None:
    """None if the customer may be profiled (never erased, or back with fresh consent), else why not."""
    suppression = work.suppression(customer_id)
    if suppression is None:
        return None
    if resumes(suppression, event_time, analytics_consent):
        work.lift_suppression(customer_id)
        work.count("privacy.resumed", partition)
        return None
    work.count("profile.suppressed", partition)
    return Rejection("erased", f"the customer was erased (request {suppression.request_id}); events without "
                               "fresh analytics consent are not profiled")
