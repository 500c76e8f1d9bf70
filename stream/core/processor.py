"""The per-event and per-tick logic of a worker, as a plain class: a batch of records in, the
effects out (tables updated through :class:`stream.core.work.Work`, and the records to publish).
No Faust, Kafka or Redis here: the agent in ``agents/profile.py`` takes batches from the
stream, calls :meth:`Processor.prepare`, sends the outputs, stores the batch's table writes
once the broker has the outputs, and only then lets the batch's offsets be committed. Unit
tests drive it directly with dicts as tables (:meth:`Processor.process` prepares and stores)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from schemas import (
    EVENT_ADAPTER,
    Alert,
    AlertOutcome,
    ChurnLabel,
    CustomerState,
    Event,
    Profile,
    Purchase,
    Refund,
    SupportContact,
    TagChange,
)
from stream.core.activity import event_counts
from stream.core.affinity import Rule, counter_names, cross_sell
from stream.core.alerts import assess
from stream.core.anomaly import screen, suspicious_alert, with_amount
from stream.core.churn import ChurnConfig, Scorer, active_day_count
from stream.core.clusters import ClusterModel
from stream.core.dedup import Admission, DedupPolicy
from stream.core.erasure import ERASE_KEY, ErasureRequest
from stream.core.fold import apply_event, starts_cart, starts_session, to_cents, to_profile
from stream.core.forget import admit_after_erasure, erase
from stream.core.identity import ALIAS_EVENT_KEY, MERGE_KEY, UNLINK_KEY, IdentityRecord
from stream.core.purchase_outlook import PurchaseModel
from stream.core.rfm import Cuts, PartitionIndex
from stream.core.rules import Rules
from stream.core.stitching import Stitching
from stream.core.sweep import (
    RESYNC_KEY,
    TICK_KEY,
    bucket_key,
    cursor_key,
    file_boundary,
    filing_bucket,
    hour_bucket,
)
from stream.core.tagging import RERANKED, compute_tags, next_boundary, tag_changes
from stream.core.validate import DEFAULT_RULES, Rejection, ValidationRules, dead_letter, validate
from stream.core.work import Effects, Record, Tables, Work

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A processed batch: its outputs, and its table writes not yet stored."""

    effects: Effects
    work: Work

    def store(self) -> None:
        """Write the batch's state, index, counters and markers to the tables, each key once."""
        self.work.flush()


class ScoringBook(Protocol):
    """The population-relative scoring book (``agents/population_sync.py``)."""

    def index(self, partition: int) -> PartitionIndex: ...
    def update(self, partition: int, customer_id: str, old: CustomerState, new: CustomerState) -> None: ...
    def cuts_for(self, partition: int) -> Cuts: ...
    def merged_cuts(self) -> Cuts: ...
    def set_applied(self, partition: int, cuts: Cuts, index: MutableMapping[str, bytes]) -> None: ...
    def due(self, partition: int, every: float) -> bool: ...
    @property
    def purchase(self) -> PurchaseModel | None: ...
    @property
    def affinity(self) -> Sequence[Rule]: ...
    @property
    def clusters(self) -> ClusterModel | None: ...
    def add_affinity(self, partition: int, orders: Mapping[str, int], follows: Mapping[tuple[str, str], int]
                     ) -> None: ...


@dataclass
class Processor(Stitching):
    """Folds batches of input records: raw events of ``raw_topic`` (validated here, and those
    keyed to another customer's partition forwarded to their owner's partition), and
    ``customer-events`` records (forwarded events, sweep ticks, resync requests)."""

    rules: Rules
    policy: DedupPolicy
    churn: ChurnConfig
    scorer: Callable[[], Scorer | None] = lambda: None
    population: ScoringBook | None = None  # set when ``scoring.mode: population``
    rescore_seconds: float = 60.0
    # a partition working through a backlog (``prepare(behind=...)``) rescores at most this often
    # (never more often than ``rescore_seconds``; ``PULSE_BACKLOG_RESCORE_SECONDS``)
    backlog_rescore_seconds: float = 0.0
    owns: Callable[[str, int], bool] = lambda customer_id, partition: True  # is the customer this partition's?
    raw_topic: str | None = None  # its records are validated first (None: every record is validated already)
    validation: ValidationRules = DEFAULT_RULES
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    pseudonymize: Callable[[str], str] | None = None  # raw customer id -> stored id (``PULSE_PSEUDONYM_KEY``)
    link_limit: int = 5  # distinct customers one anonymous id may be linked to (``PULSE_IDENTITY_LINK_LIMIT``)
    # per raw partition, the newest valid event time received (in memory): the day a record is counted on
    event_clock: dict[int, datetime] = field(default_factory=dict, init=False, repr=False)
    # the partitions of the batch in hand that are behind (see :meth:`prepare`)
    _behind: frozenset[int] = field(default=frozenset(), init=False, repr=False)

    def process(self, records: Sequence[Record], tables: Tables, behind: Collection[int] = ()) -> Effects:
        """Apply a batch in order and store its table writes; return what to publish."""
        prepared = self.prepare(records, tables, behind)
        prepared.store()
        return prepared.effects

    def prepare(self, records: Sequence[Record], tables: Tables, behind: Collection[int] = ()) -> Prepared:
        """Apply a batch in order without writing the tables: what to publish, and the table
        writes, stored by :meth:`Prepared.store`. Store them only once the outputs are durable:
        a batch whose outputs were lost is then processed again (not seen as duplicates) and
        raises its tag changes and alerts again.

        ``behind``: the partitions whose records in this batch stop short of the newest one
        fetched (a backlog). Their population rescoring waits ``backlog_rescore_seconds`` when
        that is longer than ``rescore_seconds``: while the cut points move with every batch,
        rescoring each second re-tags the customers near a cut back and forth. A batch that
        reaches the newest record rescores at the usual pace, so the scores settle as soon as
        the worker has caught up."""
        self._behind = frozenset(behind)
        work, effects = Work(tables), Effects()
        if self.population is not None:
            for partition in sorted({record.partition for record in records}):
                self.population.index(partition)  # built from the stored table, before this batch's writes
        for record in records:
            try:
                if record.topic == self.raw_topic:
                    self._on_raw(record, work, effects)
                elif record.key == TICK_KEY:
                    self._on_tick(record, work, effects)
                elif record.key == RESYNC_KEY:
                    self._on_resync(record, work, effects)
                elif record.key == ERASE_KEY:
                    self._on_erase(record, work, effects)
                elif record.key == MERGE_KEY:
                    self._on_identity(record, IdentityRecord.from_bytes(record.value), work, effects)
                elif record.key == UNLINK_KEY:
                    self._on_unlink(record, work, effects)
                elif record.key == ALIAS_EVENT_KEY:
                    self._apply(record, EVENT_ADAPTER.validate_json(record.value or b""), work, effects, alias=True)
                else:
                    self._on_event(record, work, effects)
            except Exception as exc:  # noqa: BLE001 - a bug or unreadable state must not stop the worker
                log.exception("processor: record at %s[%s]@%s failed", record.topic, record.partition,
                              record.offset)
                work.count("profile.failed", record.partition)
                self._dead_letter(record, Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:2000]),
                                  effects)
        return Prepared(effects, work)

    def _cross_sell(self, event: Purchase, state: CustomerState, partition: int, work: Work) -> CustomerState:
        """A purchase's cross-sell counts, into the partition's counters and the population book."""
        state, orders, follows = cross_sell(state, event, self.policy.lateness)
        for name, by in counter_names(orders, follows).items():
            work.count(name, partition, by)
        if self.population is not None:
            self.population.add_affinity(partition, orders, follows)
        return state

    def profile(self, state: CustomerState) -> Profile:
        """The Redis projection of a state, computed now."""
        book = self.population
        return to_profile(state, self.clock(), self.churn, self._purchase(),
                          book.affinity if book is not None else (), book.clusters if book is not None else None)

    def _purchase(self) -> PurchaseModel | None:
        return self.population.purchase if self.population is not None else None

    # -- records ------------------------------------------------------------------------
    def _dead_letter(self, record: Record, rejection: Rejection, effects: Effects, stage: str = "profile",
                     keep_payload: bool = True) -> None:
        letter = dead_letter(record.value if keep_payload else None, record.key if keep_payload else None,
                             rejection, stage=stage, now=self.clock(),
                             topic=record.topic, partition=record.partition, offset=record.offset)
        effects.dead_letters.append((record.key if keep_payload else None, letter.model_dump_json().encode()))

    def _reached(self, partition: int, event_time: datetime) -> None:
        if partition not in self.event_clock or event_time > self.event_clock[partition]:
            self.event_clock[partition] = event_time

    def _cuts(self, partition: int) -> Cuts | None:
        return self.population.cuts_for(partition) if self.population is not None else None

    def _on_raw(self, record: Record, work: Work, effects: Effects) -> None:
        partition = record.partition
        work.count("ingest.received", partition)
        try:
            result = validate(record.value, rules=self.validation, now=self.clock())
        except Exception as exc:  # noqa: BLE001 - a validator bug must not stop the worker
            log.exception("validate: record at %s[%s]@%s failed", record.topic, partition, record.offset)
            result = Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:2000])
        # the dead-letter rate: records rejected here (the producers' faults) per record received,
        # on the day of event time the partition had reached (a rejected record's own is not to be trusted)
        if isinstance(result, Rejection):
            work.count(f"ingest.rejected.{result.reason}", partition)
            if partition in self.event_clock:  # (after a restart, from the partition's first valid event)
                effects.count_activity(self.event_clock[partition], {"records": 1.0, "dead_letters": 1.0},
                                       moves_clock=False)
            self._dead_letter(record, result, effects, stage="validate")
            return
        work.count("ingest.accepted", partition)
        self._reached(partition, result.event_time)
        effects.count_activity(self.event_clock[partition], {"records": 1.0}, moves_clock=False)
        if self.pseudonymize is not None:  # from here on only the pseudonyms (they have partitions of their own)
            result = result.model_copy(update={
                name: self.pseudonymize(value) for name, value in
                (("customer_id", result.customer_id), ("anonymous_id", result.anonymous_id)) if value})
        # an anonymous id's events and its identify go to its owner, the others to the customer's
        owner = result.anonymous_id if result.anonymous or result.type == "identify" else result.customer_id
        assert owner is not None  # the schema requires one of them
        self._route(record, result, owner, work, effects)

    def _route(self, record: Record, event: Event, owner: str, work: Work, effects: Effects) -> None:
        if self.owns(owner, record.partition):
            self._dispatch(record, event, work, effects)
        else:  # keyed by something else than its owner: to the partition that holds them
            effects.forwards.append((owner, owner.encode(), EVENT_ADAPTER.dump_json(event)))

    def _on_event(self, record: Record, work: Work, effects: Effects) -> None:
        self._dispatch(record, EVENT_ADAPTER.validate_json(record.value or b""), work, effects)

    def _dispatch(self, record: Record, event: Event, work: Work, effects: Effects) -> None:
        if event.type == "identify":
            self._identify(record, event, work, effects)
        elif event.anonymous:
            self._on_anonymous(record, event, work, effects)
        else:
            self._apply(record, event, work, effects)

    def _apply(self, record: Record, event: Event, work: Work, effects: Effects, alias: bool = False) -> None:
        """Fold a customer's event (``alias``: an event of an anonymous id linked to them, admitted at the
        id's partition: not judged late here, only a redelivery is dropped; counted as ``identity.alias_*``)."""
        partition = record.partition
        state = work.state(event.customer_id)
        if state.last_event_at is None and self._suppressed(record, event.customer_id, event, work, effects):
            return
        if event.consent is not None and event.consent.analytics is False:
            # no profiling without consent: a withdrawal erases what was kept, as `pulse forget` does
            work.count("privacy.no_consent", partition)
            if state.last_event_at is not None:
                self._erase(ErasureRequest(f"consent-{event.event_id}", event.customer_id, self.clock()),
                            partition, work, effects)
            return
        new_state, admission = apply_event(state, event, self.policy, judge_lateness=not alias)
        if admission is Admission.APPLIED:
            effects.count_activity(event.event_time, event_counts(
                event.type, starts_session(state, event.session_id),
                to_cents(event.total) if isinstance(event, Purchase) else 0,
                isinstance(event, SupportContact) and event.kind == "complaint",
                active_day_count(new_state) > active_day_count(state), starts_cart(state, event)))
        work.count(f"identity.alias_{admission.value}" if alias else f"profile.{admission.value}", partition)
        work.saw_event_time(partition, event.event_time)
        if admission is not Admission.APPLIED:
            work.put(new_state)
            if admission is Admission.DUPLICATE:
                # a redelivery: its first delivery's state may be durable while the batch's Redis
                # writes were not (the worker stopped between them); the profile is written again
                # (versioned: a no-op when Redis has it)
                effects.publish(new_state)
            self._too_late(record, event, state, admission, effects)
            return
        if isinstance(event, Purchase):
            new_state = self._cross_sell(event, new_state, partition, work)
        self._settle(state, new_state, f"event:{event.type}", event.event_time, partition, work, effects, event)

    def _too_late(self, record: Record, event: Event, state: CustomerState, admission: Admission,
                  effects: Effects) -> None:
        if admission is Admission.TOO_LATE:
            newest = state.last_event_at.isoformat() if state.last_event_at else "-"
            self._dead_letter(record, Rejection(
                "too_late", f"event_time: {event.event_time.isoformat()} is more than "
                f"{self.policy.lateness} before the {'visitor' if event.anonymous else 'customer'}'s newest "
                f"event ({newest})"), effects)

    def _settle(self, state: CustomerState, new_state: CustomerState, reason: str, at: datetime, partition: int,
                work: Work, effects: Effects, event: Event | None = None) -> None:
        """Tags, churn, the next boundary and the transaction screen of a changed state; store and publish it."""
        if self.population is not None:
            self.population.update(partition, new_state.customer_id, state, new_state)
        now = max((t for t in (new_state.last_event_at, state.tags.as_of) if t is not None), default=at)
        tags = compute_tags(new_state, now, self.rules, self._cuts(partition))
        changes = tag_changes(new_state.customer_id, state.tags, tags, reason=reason, event_time=at,
                              version=new_state.revision, event_version=new_state.version)
        scorer = self.scorer()
        purchase = self._purchase()
        assessed = assess(state, new_state.model_copy(update={"tags": tags}), now, self.churn, scorer, purchase)
        boundary = next_boundary(assessed.state, now, self.rules, self.churn, scorer)
        update: dict[str, object] = {"next_boundary_at": boundary}
        alerts = assessed.alerts
        if isinstance(event, Purchase | Refund):
            cents = to_cents(event.total if isinstance(event, Purchase) else event.amount)
            screening = screen(state, event, cents)
            if isinstance(event, Purchase) and not screening.flagged:  # a flagged one stays out of the usual
                update["amount_stats"] = with_amount(state.amount_stats, cents)
            if screening.flagged:
                alerts = (*alerts, suspicious_alert(assessed.state, event, cents, screening))
        new_state = assessed.state.model_copy(update=update)
        work.put(new_state)
        if boundary != state.next_boundary_at:
            file_boundary(work.index, partition, new_state.customer_id, boundary, old=state.next_boundary_at)
        effects.publish(new_state, changes, alerts, assessed.labels, assessed.outcomes)
        if alerts:
            work.count("alerts.raised", partition, by=len(alerts))
        if self._rescore_due(partition):
            self._rescore(partition, work, effects)

    def _rescore_due(self, partition: int) -> bool:
        """Population scoring: whether the partition is due to move to the merged cut points (at
        most every ``rescore_seconds``, or ``backlog_rescore_seconds`` while it is behind)."""
        if self.population is None:
            return False
        every = self.rescore_seconds
        if partition in self._behind:
            every = max(every, self.backlog_rescore_seconds)
        return self.population.due(partition, every)

    def _on_tick(self, record: Record, work: Work, effects: Effects) -> None:
        partition = record.partition
        # a quiet partition follows the merged cut points from the ticks, at its pace (a backlog's is slower)
        if self._rescore_due(partition):
            self._rescore(partition, work, effects)
        due = datetime.fromisoformat(json.loads(record.value or b"{}")["now"]) - self.policy.lateness
        index = work.index
        stored_cursor = index.get(cursor_key(partition))
        if not stored_cursor:
            return  # nothing filed yet
        cursor, due_bucket = int(stored_cursor), hour_bucket(due)
        for bucket in range(cursor + 1, due_bucket + 1):
            key = bucket_key(bucket, partition)
            members = index.members(key)
            if not members:
                continue
            waiting = []
            for customer_id in members:
                work.count("sweeper.index_reads", partition)
                state = work.state(customer_id)
                boundary = state.next_boundary_at
                if boundary is None or filing_bucket(boundary, cursor) != bucket:
                    continue  # moved on since it was filed here
                if boundary > due:
                    waiting.append(customer_id)  # same hour, not yet due
                    continue
                work.count("sweeper.visited", partition)
                swept = self._sweep_customer(state, due, partition, work, effects)
                if swept.next_boundary_at is not None and filing_bucket(swept.next_boundary_at, cursor) == bucket:
                    waiting.append(customer_id)  # its next boundary is later in this same hour
            index.set_members(key, waiting)
        # the due hour may still receive boundaries: sweep it again next time
        index[cursor_key(partition)] = str(max(cursor, due_bucket - 1)).encode()

    def _on_resync(self, record: Record, work: Work, effects: Effects) -> None:
        # Requested by an operator (`pulse resync`): re-publish every profile of this
        # partition. Redis keeps newer versions and fills in missing ones.
        partition, published = record.partition, 0
        for customer_id in list(work.tables.state.keys()):
            if self.owns(customer_id, partition):
                effects.publish(work.state(customer_id))
                published += 1
        work.count("resync.published", partition, by=published)
        log.info("resync: re-published %d profiles of partition %d", published, partition)

    def _suppressed(self, record: Record, subject: str, event: Event, work: Work, effects: Effects) -> bool:
        # Only a customer with no state can be an erased one: one lookup per new customer.
        rejection = admit_after_erasure(work, record.partition, subject, event.event_time,
                                        event.consent.analytics if event.consent else None)
        if rejection is not None:  # dead-lettered without payload or key: nothing erased is kept
            self._dead_letter(record, rejection, effects, keep_payload=False)
        return rejection is not None

    def _on_erase(self, record: Record, work: Work, effects: Effects) -> None:
        self._erase(ErasureRequest.from_bytes(record.value), record.partition, work, effects)

    def _erase(self, request: ErasureRequest, partition: int, work: Work, effects: Effects) -> None:
        erase(request, partition, work, effects, self.population, self.clock())

    # -- time and population ---------------------------------------------------------------
    def _sweep_customer(self, state: CustomerState, due: datetime, partition: int, work: Work,
                        effects: Effects) -> CustomerState:
        changes: list[TagChange] = []
        alerts: list[Alert] = []
        labels: list[ChurnLabel] = []
        outcomes: list[AlertOutcome] = []
        scorer, purchase = self.scorer(), self._purchase()
        current, boundary = state, state.next_boundary_at
        while boundary is not None and boundary <= due:
            new_tags = compute_tags(current, boundary, self.rules, self._cuts(partition))
            changes += tag_changes(current.customer_id, current.tags, new_tags, reason="time", event_time=boundary,
                                   version=current.revision + 1, event_version=current.version)
            stepped = current.model_copy(update={"tags": new_tags, "revision": current.revision + 1})
            assessed = assess(current, stepped, boundary, self.churn, scorer, purchase)
            alerts += assessed.alerts
            labels += assessed.labels
            outcomes += assessed.outcomes
            current = assessed.state
            boundary = next_boundary(current, boundary, self.rules, self.churn, scorer)
        work.count("sweeper.transitions", partition, by=len(changes))
        work.count("alerts.raised", partition, by=len(alerts))
        swept = current.model_copy(update={"next_boundary_at": boundary})
        work.put(swept)
        file_boundary(work.index, partition, swept.customer_id, swept.next_boundary_at)
        effects.publish(swept, changes, alerts, labels, outcomes)
        return swept

    def _rescore(self, partition: int, work: Work, effects: Effects) -> None:
        # Move this partition to the merged population's cut points: only the customers
        # between an old and a new cut can change score (see agents/population_sync.py).
        book = self.population
        assert book is not None
        old, new = book.cuts_for(partition), book.merged_cuts()
        if old == new:
            book.set_applied(partition, new, work.index)
            return
        moved = book.index(partition).members_between(old.moved(new))
        work.count("rfm.rescore_visits", partition, by=len(moved))
        rescored = 0
        scorer = self.scorer()
        for customer_id in sorted(moved):
            state = work.state(customer_id)
            as_of = state.tags.as_of or state.last_event_at
            assert as_of is not None  # indexed customers have purchased, so they have been tagged
            tags = compute_tags(state, as_of, self.rules, new)
            if tags.tag_values() == state.tags.tag_values():
                continue
            revision = state.revision + 1
            changes = tag_changes(customer_id, state.tags, tags, reason=RERANKED, event_time=as_of,
                                  version=revision, event_version=state.version)
            moved_state = state.model_copy(update={"tags": tags, "revision": revision})
            assessed = assess(state, moved_state, as_of, self.churn, scorer, self._purchase())
            work.put(assessed.state)
            effects.publish(assessed.state, changes, assessed.alerts, assessed.labels, assessed.outcomes)
            rescored += 1
        work.count("rfm.rescored", partition, by=rescored)
        book.set_applied(partition, new, work.index)

