"""A batch's records in (:class:`Record`), its effects out (:class:`Effects`), and its view of
the processor's tables (:class:`Work`): each customer's state is decoded once, every write is
kept here, and :meth:`Work.flush` stores each changed key once. Nothing reaches the tables
before :meth:`Work.flush`, so the agent can make a batch's outputs durable before the state
that produced them (see ``agents/profile.py``).

Counters are aggregated per batch (one table write per partition and batch, not per counter or
event: ``stream/core/counters.py``), event-time maxima likewise; the sweep index is read through the batch's own writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

from schemas import Alert, AlertOutcome, ChurnLabel, CustomerState, Identity, TagChange
from stream.core import counters
from stream.core.erasure import Erasure, Suppression, subject_digest
from stream.core.sweep import decode_members, encode_members
from stream.core.watermark import advance

Store = MutableMapping[str, bytes]
_DELETED = b""  # marks an index key deleted in this batch (the index never stores empty values)


@dataclass(frozen=True)
class Record:
    """One input record: where it came from, its key and its bytes."""

    partition: int
    key: bytes | None
    value: bytes | None
    topic: str = ""
    offset: int = -1


@dataclass
class Effects:
    """What a batch publishes. Profiles hold each customer's newest state of the batch (the
    Redis projection keeps the highest version, so the intermediate ones add nothing)."""

    profiles: dict[str, CustomerState] = field(default_factory=dict)
    tag_changes: list[TagChange] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    labels: list[ChurnLabel] = field(default_factory=list)
    outcomes: list[AlertOutcome] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # key, DeadLetter JSON
    # records for the customer-events partition that owns an id, in the order made: (that id, key,
    # value): forwarded events (keyed by the id) and control records (merges, alias erasures)
    forwards: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    activity: dict[int, dict[str, float]] = field(default_factory=dict)  # event-time day: population counts
    erasures: list[Erasure] = field(default_factory=list)  # for the Redis sink to finish, in order
    newest_event_time: datetime | None = None  # of the events applied

    def count_activity(self, at: datetime, counts: dict[str, float], moves_clock: bool = True) -> None:
        """Add to the day of ``at``; ``moves_clock``: ``at`` is an applied event's time, which moves
        ``newest_event_time`` (the drift monitors' watermark)."""
        day = self.activity.setdefault(int(at.timestamp() // 86_400), {})
        for name, value in counts.items():
            day[name] = day.get(name, 0.0) + value
        if moves_clock and (self.newest_event_time is None or at > self.newest_event_time):
            self.newest_event_time = at

    def forget(self, customer_id: str) -> None:
        """Drop what this batch would still publish about an erased customer."""
        self.profiles.pop(customer_id, None)
        self.tag_changes = [c for c in self.tag_changes if c.customer_id != customer_id]
        self.alerts = [a for a in self.alerts if a.customer_id != customer_id]
        self.labels = [label for label in self.labels if label.customer_id != customer_id]
        self.outcomes = [outcome for outcome in self.outcomes if outcome.customer_id != customer_id]

    def publish(self, state: CustomerState, changes: Iterable[TagChange] = (), alerts: Iterable[Alert] = (),
                labels: Iterable[ChurnLabel] = (), outcomes: Iterable[AlertOutcome] = ()) -> None:
        self.profiles[state.customer_id] = state
        self.tag_changes.extend(changes)
        self.alerts.extend(alerts)
        self.labels.extend(labels)
        self.outcomes.extend(outcomes)


@dataclass(frozen=True)
class Tables:
    """The processor's tables: any ``MutableMapping[str, bytes]`` (Faust tables, or dicts in tests)."""

    state: Store
    counters: Store
    maxima: Store
    index: Store
    erasures: Store = field(default_factory=dict)  # suppression markers of erased customers, by digest
    identities: Store = field(default_factory=dict)  # anonymous ids: Identity JSON (stream/core/identity.py)


class IndexView(MutableMapping[str, bytes]):
    """The sweep-index table seen through the batch's pending writes. A bucket's member list is
    decoded at its first use in the batch and encoded once at :meth:`flush` (an hour's bucket
    can list thousands of customers: decoding and encoding it for every event made filing cost
    grow with the bucket)."""

    def __init__(self, table: Store) -> None:
        self.table = table
        self.pending: dict[str, bytes | list[str]] = {}  # writes (_DELETED: deleted; lists are never empty)
        self.read: dict[str, list[str]] = {}  # buckets decoded in this batch and not written
        self.fetched: dict[str, bytes | None] = {}  # other keys read in this batch (None: absent), e.g. the cursors

    def members(self, key: str) -> list[str]:
        """The customers filed under a bucket key, as this batch has them (a copy: change it
        through :meth:`set_members`)."""
        value = self.pending.get(key)
        if isinstance(value, list):
            return list(value)
        if value is not None:
            return decode_members(value or None)
        if key not in self.read:
            self.read[key] = decode_members(self.table.get(key))
        return list(self.read[key])

    def set_members(self, key: str, members: list[str]) -> None:
        """File exactly these customers under a bucket key (none: the key goes)."""
        self.pending[key] = list(members) if members else _DELETED

    def __getitem__(self, key: str) -> bytes:
        value = self.pending.get(key)
        if value is None:
            stored = self._stored(key)
            if stored is None:
                raise KeyError(key)
            return stored
        if isinstance(value, list):
            return encode_members(value)
        if value is _DELETED:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        if not value:
            raise ValueError(f"sweep index {key!r}: empty values are not stored")
        self.pending[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending[key] = _DELETED

    def __contains__(self, key: object) -> bool:
        value = self.pending.get(key)  # type: ignore[call-overload]
        if value is None:
            return isinstance(key, str) and self._stored(key) is not None
        return value is not _DELETED

    def _stored(self, key: str) -> bytes | None:
        """The table's value, read once per batch (a partition's cursor is read at every filing)."""
        if key in self.fetched:
            return self.fetched[key]
        stored = self.fetched[key] = self.table.get(key)
        return stored

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            if key not in self.pending:
                yield key
        yield from (key for key, value in self.pending.items() if value is not _DELETED)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        for key, value in self.pending.items():
            if value is _DELETED:
                self.table.pop(key, None)
            elif isinstance(value, list):
                self.table[key] = encode_members(value)
            else:
                self.table[key] = value
        self.pending.clear()
        self.read.clear()
        self.fetched.clear()


@dataclass
class Work:
    """The pending writes of one batch over :class:`Tables`."""

    tables: Tables
    states: dict[str, CustomerState] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)  # by partition
    maxima: dict[str, int | None] = field(default_factory=dict)
    identities: dict[str, Identity | None] = field(default_factory=dict)  # read or written; None: none
    identities_changed: set[str] = field(default_factory=set)
    suppressions: dict[str, bytes | None] = field(default_factory=dict)  # by digest; None: lifted
    index: IndexView = field(init=False)

    def __post_init__(self) -> None:
        self.index = IndexView(self.tables.index)

    def identity(self, anonymous_id: str) -> Identity | None:
        if anonymous_id not in self.identities:
            stored = self.tables.identities.get(anonymous_id)
            self.identities[anonymous_id] = Identity.model_validate_json(stored) if stored else None
        return self.identities[anonymous_id]

    def put_identity(self, identity: Identity) -> None:
        self.identities[identity.anonymous_id] = identity
        self.identities_changed.add(identity.anonymous_id)

    def delete_identity(self, anonymous_id: str) -> bool:
        """Remove an anonymous id's record; whether there was one."""
        had = self.identity(anonymous_id) is not None
        self.identities[anonymous_id] = None
        self.identities_changed.add(anonymous_id)
        return had

    def state(self, customer_id: str) -> CustomerState:
        state = self.states.get(customer_id)
        if state is None:
            stored = self.tables.state.get(customer_id)
            state = (CustomerState.model_validate_json(stored) if stored
                     else CustomerState(customer_id=customer_id))
            self.states[customer_id] = state
        return state

    def put(self, state: CustomerState) -> None:
        self.states[state.customer_id] = state
        self.changed.add(state.customer_id)
        self.deleted.discard(state.customer_id)

    def delete(self, customer_id: str) -> None:
        """Remove the customer's state (a Faust table writes a tombstone to its changelog)."""
        self.states[customer_id] = CustomerState(customer_id=customer_id)
        self.changed.discard(customer_id)
        self.deleted.add(customer_id)

    def suppression(self, customer_id: str) -> Suppression | None:
        digest = subject_digest(customer_id)
        stored = self.suppressions[digest] if digest in self.suppressions else self.tables.erasures.get(digest)
        return Suppression.from_bytes(stored) if stored else None

    def suppress(self, customer_id: str, suppression: Suppression) -> None:
        self.suppressions[subject_digest(customer_id)] = suppression.to_bytes()

    def lift_suppression(self, customer_id: str) -> None:
        self.suppressions[subject_digest(customer_id)] = None

    def count(self, name: str, partition: int, by: int = 1) -> None:
        if by:
            counts = self.counts.setdefault(partition, {})
            counts[name] = counts.get(name, 0) + by

    def saw_event_time(self, partition: int, event_time: datetime) -> None:
        key = f"p{partition}"
        if key not in self.maxima:
            stored = self.tables.maxima.get(key)
            self.maxima[key] = int(stored) if stored else None
        self.maxima[key] = advance(self.maxima[key], event_time) or self.maxima[key]

    def flush(self) -> None:
        """Store every change once: states first, then the index that files them, then counters."""
        state_table = self.tables.state
        for customer_id in self.changed:
            state_table[customer_id] = self.states[customer_id].model_dump_json().encode()
        self.changed.clear()
        for customer_id in self.deleted:
            state_table.pop(customer_id, None)
        self.deleted.clear()
        for anonymous_id in self.identities_changed:
            identity = self.identities[anonymous_id]
            if identity is not None:
                self.tables.identities[anonymous_id] = identity.model_dump_json().encode()
            elif anonymous_id in self.tables.identities:
                del self.tables.identities[anonymous_id]
        self.identities_changed.clear()
        for digest, marker in self.suppressions.items():
            if marker is not None:
                self.tables.erasures[digest] = marker
            else:
                self.tables.erasures.pop(digest, None)
        self.suppressions.clear()
        self.index.flush()
        for key, newest in self.maxima.items():
            if newest is not None and self.tables.maxima.get(key) != (encoded := str(newest).encode()):
                self.tables.maxima[key] = encoded
        self.maxima.clear()
        for partition, counts in self.counts.items():
            counters.add(self.tables.counters, partition, counts)
        self.counts.clear()
