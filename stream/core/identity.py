"""Identity stitching: anonymous activity (events carrying only ``anonymous_id``, a device or
cookie id) kept under the anonymous id, merged into a customer's state when an ``identify``
event links the two, and moved back out by an unlink.

Every record naming an anonymous id goes to the partition that owns that id, so one worker
decides each link in order: the ``identities`` table holds the id's own activity (a state
folded from its browsing events), the customer it is linked to, and every customer it was ever
linked to. A link sends a merge record (key :data:`MERGE_KEY`) with the activity to the
customer's partition; after it, the anonymous id's events are folded into its own activity
and forwarded to the customer, so the customer's state is its own events plus what each alias
brought. An unlink sends the whole activity back as an unmerge record, which subtracts it.
An alias's forwarded event was admitted (deduplicated, judged for lateness) at the anonymous
id's partition; the customer drops it only as a redelivery, never as late: it may arrive after
the customer's own newer events from their partition, as in a fast replay of a long history.

What moves: events, sessions, clicks, channel use, hours of the day, category interest and the
sessions and clicks of the rolling windows; the first-seen time and the funnel stage when they are
newer. A session that began before the login and went on after it counts once while it is among
the customer's last eight sessions when the merge arrives (always so live; a fast replay of a long
history, where the customer's own later sessions come first, may count it twice). The customer's
newest event time stays theirs: it is the lateness reference of their own events, which may
still be on their way from other partitions. Purchases, refunds and support contacts need a
customer id (``schemas/events.py``), so nothing a merge carries can count an order twice. An
unlink takes the counts back out (floored at zero); times and the funnel stage stay as they were.

Merge storms: an anonymous id linked to more than ``limit`` distinct customers (a shared kiosk
or a tag manager sending a constant) is refused, and placeholder ids never link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from schemas import CustomerState, Identity
from stream.core.anomaly import HOUR_SLOTS
from stream.core.dedup import session_key, with_session
from stream.core.preferences import MAX_CATEGORIES, Interest, decayed
from stream.core.validate import Rejection
from stream.core.windows import combine

MERGE_KEY = b"\x00pulse-identity"  # control record on customer-events: merge or unmerge an alias
UNLINK_KEY = b"\x00pulse-unlink"  # control record on customer-events: unlink an anonymous id
ALIAS_EVENT_KEY = b"\x00pulse-alias-event"  # an alias's event, forwarded to the customer it is linked to

# What broken tagging sends in place of an id; linking on one would merge every visitor.
PLACEHOLDER_IDS = frozenset({"", "0", "-1", "null", "none", "nil", "undefined", "anonymous", "unknown",
                             "guest", "nan", "n/a", "[object object]"})
ADDITIVE = ("events", "sessions", "clicks")


def is_placeholder(value: str | None) -> bool:
    """
    >>> [is_placeholder(v) for v in ("undefined", " NULL ", "-1", "d-8f2c")]
    [True, True, True, False]
    """
    return value is None or value.strip().lower() in PLACEHOLDER_IDS


def placeholder_rejection(field: str, value: str | None) -> Rejection:
    return Rejection("placeholder_id", f"{field}: {value!r} is a placeholder, not an id; placeholder ids "
                                       f"({', '.join(sorted(repr(v) for v in PLACEHOLDER_IDS if v))}) never link")


def new_identity(anonymous_id: str) -> Identity:
    return Identity(anonymous_id=anonymous_id, activity=CustomerState(customer_id=anonymous_id))


def link(identity: Identity, customer_id: str, limit: int) -> tuple[Identity, CustomerState | None] | Rejection:
    """Link the anonymous id to ``customer_id``: the new identity and the activity to merge into
    the customer (None: already linked to them), or why not.

    A link to a second customer moves no earlier activity (it went to the first one); the anonymous
    id's own activity starts again from the link, so an unlink takes out only what this link brought.

    >>> one, merge = link(new_identity("d1"), "c1", limit=1)
    >>> one.linked_to, merge.customer_id, link(one, "c1", limit=1)[1]
    ('c1', 'd1', None)
    >>> link(one, "c2", limit=1).reason
    'merge_storm'
    """
    if identity.linked_to == customer_id:
        return identity, None
    if customer_id not in identity.links and len(identity.links) >= limit:
        return Rejection("merge_storm", f"anonymous_id: {identity.anonymous_id!r} is already linked to "
                         f"{len(identity.links)} customers, the limit (PULSE_IDENTITY_LINK_LIMIT={limit}); "
                         "a device shared this widely is not one person's")
    activity = identity.activity
    if identity.linked_to is not None:  # relinked: keep only what deduplication needs
        activity = CustomerState(customer_id=activity.customer_id, last_event_at=activity.last_event_at,
                                 seen_event_ids=activity.seen_event_ids, last_session_id=activity.last_session_id)
    links = identity.links if customer_id in identity.links else [*identity.links, customer_id]
    return identity.model_copy(update={"activity": activity, "linked_to": customer_id, "links": links}), activity


def unlink(identity: Identity) -> tuple[Identity, str | None]:
    """The identity unlinked and the customer it was linked to (None: it was not linked)."""
    if identity.linked_to is None:
        return identity, None
    return identity.model_copy(update={"linked_to": None}), identity.linked_to


@dataclass(frozen=True)
class IdentityRecord:
    """A merge or unmerge, sent from the anonymous id's partition to the customer's."""

    kind: str  # "merge" or "unmerge"
    anonymous_id: str
    customer_id: str
    activity: CustomerState
    at: datetime  # the identify's event time, or the unlink's request time

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": self.kind, "anonymous_id": self.anonymous_id, "customer_id": self.customer_id,
                           "activity": self.activity.model_dump(mode="json"), "at": self.at.isoformat()}).encode()

    @classmethod
    def from_bytes(cls, value: bytes | None) -> IdentityRecord:
        data = json.loads(value or b"")
        if data.get("kind") not in ("merge", "unmerge"):
            raise ValueError(f"not an identity record: kind {data.get('kind')!r}")
        return cls(data["kind"], data["anonymous_id"], data["customer_id"],
                   CustomerState.model_validate(data["activity"]), datetime.fromisoformat(data["at"]))


def unlink_request(anonymous_id: str, now: datetime) -> bytes:
    return json.dumps({"anonymous_id": anonymous_id, "requested_at": now.isoformat()}).encode()


def parse_unlink_request(value: bytes | None) -> tuple[str, datetime]:
    data = json.loads(value or b"")
    return str(data["anonymous_id"]), datetime.fromisoformat(data["requested_at"])


def merged(state: CustomerState, record: IdentityRecord) -> CustomerState:
    """The customer's state with the alias's activity added (a merge) or taken out (an unmerge).

    >>> from datetime import UTC, timedelta
    >>> t = datetime(2024, 5, 1, tzinfo=UTC)
    >>> anon = CustomerState(customer_id="d1", events=3, sessions=1, clicks=3, channel_counts={"app": 3},
    ...                      first_seen_at=t - timedelta(days=2), last_event_at=t, funnel_stage="cart")
    >>> me = CustomerState(customer_id="c1", events=2, orders=1, sessions=1, channel_counts={"web": 2},
    ...                    first_seen_at=t - timedelta(days=1), last_event_at=t - timedelta(hours=1))
    >>> both = merged(me, IdentityRecord("merge", "d1", "c1", anon, t))
    >>> both.events, both.orders, both.channel_counts, both.funnel_stage, both.aliases
    (5, 1, {'web': 2, 'app': 3}, 'cart', ['d1'])
    >>> back = merged(both, IdentityRecord("unmerge", "d1", "c1", anon, t))
    >>> back.events, back.sessions, back.channel_counts, back.aliases
    (2, 1, {'web': 2}, [])
    """
    sign = 1 if record.kind == "merge" else -1
    activity = record.activity
    update: dict[str, object] = {name: max(0, getattr(state, name) + sign * getattr(activity, name))
                                 for name in ADDITIVE}
    login_session = activity.last_session_id
    if sign > 0 and login_session is not None:
        if session_key(login_session) in state.recent_sessions:  # the session of the login, counted on both sides
            update["sessions"] = max(0, state.sessions + activity.sessions - 1)
        else:  # the customer's events in it are yet to come: they are not a session of their own
            update["recent_sessions"] = with_session(state.recent_sessions, login_session)
            if state.last_event_at is None or (activity.last_event_at is not None
                                               and activity.last_event_at > state.last_event_at):
                update["last_session_id"] = login_session
                update["session_carted"] = False  # anonymous carts are not counted: the customer's first here is
    update["channel_counts"] = _counts(state.channel_counts, activity.channel_counts, sign)
    update["hour_counts"] = _slots(state.hour_counts, activity.hour_counts, sign)
    update["category_interest"] = _interest(state.category_interest, activity.category_interest, sign)
    # The customer's own clock: the merge does not move their newest event time, which would make
    # their own events still on the way from other partitions look late.
    clock = state.last_event_at or max(t for t in (activity.last_event_at, record.at) if t is not None)
    update["daily"], update["weekly"] = combine(state.daily, state.weekly, activity.daily, activity.weekly,
                                                clock, sign)
    if sign > 0:
        update["aliases"] = [*state.aliases, record.anonymous_id]
        update["first_seen_at"] = min(t for t in (state.first_seen_at, activity.first_seen_at, record.at)
                                      if t is not None)
        if activity.last_event_at is not None and (state.last_event_at is None
                                                   or activity.last_event_at > state.last_event_at):
            update["funnel_stage"] = activity.funnel_stage
    else:
        update["aliases"] = [alias for alias in state.aliases if alias != record.anonymous_id]
    update["revision"] = state.revision + 1
    return state.model_copy(update=update)


def _counts(mine: dict[str, int], theirs: dict[str, int], sign: int) -> dict[str, int]:
    out = dict(mine)
    for name, count in theirs.items():
        out[name] = out.get(name, 0) + sign * count
    return {name: count for name, count in out.items() if count > 0}


def _slots(mine: tuple[int, ...], theirs: tuple[int, ...], sign: int) -> tuple[int, ...]:
    if len(theirs) != HOUR_SLOTS:
        return mine
    base = mine if len(mine) == HOUR_SLOTS else (0,) * HOUR_SLOTS
    return tuple(max(0, a + sign * b) for a, b in zip(base, theirs, strict=True))


def _interest(mine: Interest, theirs: Interest, sign: int) -> dict[str, tuple[float, float]]:
    """Scores decay with a half-life in event time: both are brought to the later day, then added
    (or the alias's taken out, floored at zero). Kept to the strongest categories, as a fold keeps them."""
    out = dict(mine)
    for category, (score, day) in theirs.items():
        have, since = out.get(category, (0.0, day))
        base = max(since, day)
        total = decayed(have, since, base) + sign * decayed(score, day, base)
        if total > 1e-9:
            out[category] = (round(total, 6), round(base, 4))
        else:
            out.pop(category, None)
    if len(out) > MAX_CATEGORIES:
        newest = max(day for _, day in out.values())
        keep = sorted(out, key=lambda c: -decayed(out[c][0], out[c][1], newest))[:MAX_CATEGORIES]
        out = {c: out[c] for c in keep}
    return out
