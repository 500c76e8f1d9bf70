"""Customer lookups straight from Redis, for services that do not want HTTP, and behind
``pulse serve``: field subsets, batches in one pipelined round trip, segment pages and recent
alerts, each customer answer with its freshness (:class:`schemas.api.CustomerLookup`).

>>> from stream.api.lookup import LookupClient
>>> client = LookupClient.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
>>> client.get("c42", fields=["segment", "churn_risk"], max_age_seconds=60)  # doctest: +SKIP
CustomerLookup(customer_id='c42', status='fresh', version=7, event_version=6, ..., profile={'segment': 'Loyal', ...})

:class:`LookupClient` uses redis-py's blocking client, :class:`AsyncLookupClient` its asyncio
client; both build the same commands and read the answers with the same functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic_core import to_json

from schemas import Profile
from schemas.api import CustomerLookup, SegmentPage
from stream.core.purchase_outlook import PurchaseModel
from stream.model.params import read_served
from stream.sinks.base import ReadModels, as_of_now, typed_fields
from stream.sinks.erasure import receipt_key
from stream.sinks.redis import KEY_PREFIX, customer_key, segment_key

PROFILE_FIELDS = tuple(Profile.model_fields)
FRESHNESS_FIELDS = ("version", "event_version", "computed_at", "as_of_event_time")
STAMP = "stamp"  # the write's stamp (``stamp``), read with every field subset
# recomputed at read time as of the purchase model's now, from the inputs beside them
PURCHASE_OUTPUTS = frozenset({"p_alive", "purchase_churn_probability", "expected_orders", "predicted_value",
                              "potential", "purchase_model", "scores_as_of"})
PURCHASE_INPUTS = ("orders", "purchase_days", "first_purchase_at", "last_purchase_at", "monetary", "value_tier")
# the churn score too, from the features stored beside it and the purchase model's outlook now
CHURN_OUTPUTS = frozenset({"churn_probability", "churn_risk", "churn_reasons", "model_version", "churn_as_of"})
CHURN_INPUTS = ("churn_inputs", "churn_as_of")
ALERT_SCAN = 10_000  # the newest alerts looked through when filtering by kind
TIMEOUT_SECONDS = 0.5  # a lookup that Redis cannot answer in this time fails instead of hanging
MODELS_TTL_SECONDS = 1.0  # the clients re-read the published models at most this often
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
CACHE_ENTRIES = 20_000  # answers kept per client for batch lookups (about 6 KB each)
SAMPLE_CHUNK = 250  # sampled profiles scored between two yields to the event loop (about 20 ms)

# A batch read in one command: each hash whose ``stamp`` field (written by the sink with every
# version, ``stream/sinks/redis.py``) is the one the caller holds comes back as 1, every other as
# its fields (HGETALL, or HMGET of the names given). So a batch of customers already answered
# costs Redis 100 one-field reads and the client 100 integers, not 100 hashes to decode and
# score again. KEYS: the hashes; ARGV: the count of names, the names, then the stamps held, one
# per key ("" for none), joined by newlines (one argument: each costs the client to encode).
_BATCH_READ = """
local n = tonumber(ARGV[1])
local names = {}
for i = 1, n do names[i] = ARGV[1 + i] end
local stamps, from = ARGV[2 + n], 1
local out = {}
for i, key in ipairs(KEYS) do
  local stop = string.find(stamps, '\\n', from, true) or (#stamps + 1)
  local held = string.sub(stamps, from, stop - 1)
  from = stop + 1
  if held ~= '' and redis.call('HGET', key, 'stamp') == held then
    out[i] = 1
  elseif n == 0 then
    out[i] = redis.call('HGETALL', key)
  else
    out[i] = redis.call('HMGET', key, unpack(names))
  end
end
return out
"""

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)


class UnknownFields(ValueError):
    """Some asked-for field is not a profile field; the message lists the accepted ones."""


def requested_fields(fields: Iterable[str] | None) -> tuple[str, ...] | None:
    """The asked-for profile fields, checked (None: all of them).

    >>> requested_fields(["segment", " churn_risk", "segment"])
    ('segment', 'churn_risk')
    >>> requested_fields(["segmnet"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream.api.lookup.UnknownFields: unknown profile field 'segmnet'; accepted: customer_id, version, ...
    """
    if fields is None:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in fields if name.strip()))
    for name in names:
        if name not in PROFILE_FIELDS:
            raise UnknownFields(f"unknown profile field {name!r}; accepted: {describe_fields()}")
    return names


def describe_fields() -> str:
    return ", ".join(PROFILE_FIELDS)


def _read_names(names: tuple[str, ...]) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if CHURN_OUTPUTS.intersection(names):
        extra = (*PURCHASE_INPUTS, *CHURN_INPUTS)
    elif PURCHASE_OUTPUTS.intersection(names):
        extra = PURCHASE_INPUTS
    return tuple(dict.fromkeys((*FRESHNESS_FIELDS, STAMP, *names, *extra)))


def _queue_reads(pipe: Any, ids: Sequence[str], names: tuple[str, ...] | None, prefix: str,
                 models: bool = True) -> None:
    if models:
        pipe.get(f"{prefix}purchase-model")  # in the same round trip: scores are read as of its now,
        pipe.get(f"{prefix}churn-model")  # by the churn scorer the workers use now
    for customer_id in ids:
        if names is None:
            pipe.hgetall(customer_key(customer_id, prefix))
        else:
            pipe.hmget(customer_key(customer_id, prefix), _read_names(names))


def _as_mapping(raw: Any, names: tuple[str, ...] | None) -> dict[str, str]:
    if names is None:
        return dict(raw or {})
    return {name: value for name, value in zip(_read_names(names), raw, strict=True) if value is not None}


def read_models(purchase: str | bytes | None, churn: str | bytes | None) -> ReadModels:
    """The published purchase model (with the horizon its outlooks are over) and churn scorer,
    as stored in Redis (``pulse:purchase-model``, ``pulse:churn-model``).

    >>> read_models(None, None)
    ReadModels(purchase=None, horizon_days=90, churn=None, churn_config=None)
    """
    model, horizon = None, 90
    if purchase:
        data = json.loads(purchase)
        model, horizon = PurchaseModel.from_json(data), int(data.get("horizon_days", 90))  # (horizon of the fit)
    scorer, config = read_served(json.loads(churn)) if churn else (None, None)
    return ReadModels(purchase=model, horizon_days=horizon, churn=scorer, churn_config=config)


def to_lookup(customer_id: str, stored: Mapping[str, str], names: tuple[str, ...] | None, now: datetime,
              max_age_seconds: float | None) -> CustomerLookup | None:
    """A stored hash as an answer (None: no profile).

    >>> stored = {"version": "3", "computed_at": "2026-01-01T00:00:00+00:00", "as_of_event_time": "",
    ...           "orders": "2", "segment": "Loyal", "written_at": "1767225600000"}
    >>> found = to_lookup("c1", stored, None, datetime(2026, 1, 1, 0, 2, tzinfo=UTC), 60)
    >>> found.status, found.staleness_seconds, found.profile
    ('stale', 120.0, {'orders': 2, 'segment': 'Loyal'})
    """
    if not stored.get("version") or not stored.get("computed_at"):
        return None
    computed_at = datetime.fromisoformat(stored["computed_at"])
    staleness = max(0.0, (now - computed_at).total_seconds())
    as_of = stored.get("as_of_event_time")
    wanted = PROFILE_FIELDS if names is None else names
    profile = typed_fields({name: stored[name] for name in wanted
                            if name in stored and name not in FRESHNESS_FIELDS and name != "customer_id"})
    return CustomerLookup(
        customer_id=customer_id,
        status="stale" if max_age_seconds is not None and staleness > max_age_seconds else "fresh",
        version=int(stored["version"]), event_version=int(stored.get("event_version") or 0),
        as_of_event_time=datetime.fromisoformat(as_of) if as_of else None,
        computed_at=computed_at, staleness_seconds=round(staleness, 3),
        profile=profile,  # type: ignore[arg-type]
    )


def _lookups(ids: Sequence[str], raws: Sequence[Any], names: tuple[str, ...] | None, now: datetime,
             max_age_seconds: float | None, models: ReadModels) -> dict[str, CustomerLookup | None]:
    return {cid: to_lookup(cid, as_of_now(_as_mapping(raw, names), models), names, now, max_age_seconds)
            for cid, raw in zip(ids, raws, strict=True)}


def _page(segment: str, answer: Any) -> SegmentPage:
    cursor, members = answer
    return SegmentPage(segment=segment, customers=sorted(str(m) for m in members),
                       next_cursor=None if str(cursor) == "0" else str(cursor))


def _alert_range(since: datetime | None) -> str:
    return f"{int(since.timestamp() * 1000)}" if since else "-"


def _alerts(entries: Any, kind: str | None, limit: int) -> list[dict[str, str]]:
    found = []
    for entry_id, fields in entries or []:
        if kind is None or fields.get("kind") == kind:
            found.append({"id": str(entry_id), **{str(k): str(v) for k, v in fields.items()}})
            if len(found) == limit:
                break
    return found


def _client_options() -> dict[str, Any]:
    return {"decode_responses": True, "socket_timeout": TIMEOUT_SECONDS,
            "socket_connect_timeout": TIMEOUT_SECONDS, "retry_on_timeout": False}


class _ModelsCache:
    """The published models as last read, for ``ttl`` seconds: most lookups are then one command."""

    def __init__(self, ttl: float, monotonic: Callable[[], float]) -> None:
        self.ttl, self.monotonic = ttl, monotonic
        self.models: ReadModels | None = None
        self.read_at = -math.inf
        self._raw: tuple[Any, Any] | None = None

    def fresh(self) -> ReadModels | None:
        return self.models if self.monotonic() - self.read_at < self.ttl else None

    def keep(self, raws: Sequence[Any]) -> ReadModels:
        """The models from their stored documents: the same object while the documents are the
        same (so what was scored with them can be kept, :class:`AnswerCache`)."""
        raw = (raws[0], raws[1])
        if self.models is None or raw != self._raw:
            self.models, self._raw = read_models(*raw), raw
        self.read_at = self.monotonic()
        return self.models


def stamp(stored: Mapping[str, str]) -> str:
    """What tells this write of a profile hash from any other: its ``stamp`` field, ``""`` for
    a hash written before the field existed (read in full every time, never held).

    >>> stamp({"stamp": "6:7:1767225600000", "version": "7"}), stamp({"version": "7"})
    ('6:7:1767225600000', '')
    """
    return stored.get("stamp", "")


class Held:
    """One answer as read and scored, with the stamp of the hash it came from. ``status``,
    ``staleness_seconds`` and ``customer_id`` are set per answer (:meth:`lookup`, :meth:`json`)."""

    __slots__ = ("stamp", "answer", "computed_us", "_id", "_head", "_middle", "_tail")

    def __init__(self, stamp: str, answer: CustomerLookup) -> None:
        self.stamp, self.answer = stamp, answer
        self.computed_us = micros(answer.computed_at)
        self._id = ""
        self._head = self._middle = self._tail = b""

    def lookup(self, customer_id: str, now: datetime, max_age_seconds: float | None) -> CustomerLookup:
        """The answer as of ``now`` (``to_lookup``'s staleness and status)."""
        staleness = max(0.0, (now - self.answer.computed_at).total_seconds())
        return self.answer.model_copy(update={
            "customer_id": customer_id, "staleness_seconds": round(staleness, 3),
            "status": "stale" if max_age_seconds is not None and staleness > max_age_seconds else "fresh"})

    def encode(self, parts: list[bytes], customer_id: str, now_us: int, max_age_seconds: float | None) -> None:
        """Append ``"<id>":`` and ``self.lookup(customer_id, now).model_dump_json()`` to ``parts``,
        ``now_us`` the microseconds of ``now`` (:func:`micros`), from parts encoded once (a test
        holds the answers equal)."""
        if not self._tail:
            found = self.answer
            self._middle = (b'","version":' + to_json(found.version)
                            + b',"event_version":' + to_json(found.event_version)
                            + b',"as_of_event_time":' + to_json(found.as_of_event_time)
                            + b',"computed_at":' + to_json(found.computed_at) + b',"staleness_seconds":')
            self._tail = b',"profile":' + to_json(found.profile) + b"}"
        if customer_id != self._id:
            self._id, self._head = customer_id, to_json(customer_id)
        staleness = max(0.0, (now_us - self.computed_us) / 1_000_000)  # as timedelta.total_seconds()
        stale = max_age_seconds is not None and staleness > max_age_seconds
        parts += (self._head, b':{"customer_id":', self._head, b',"status":"stale' if stale else b',"status":"fresh',
                  self._middle, to_json(round(staleness, 3)), self._tail)


def micros(at: datetime) -> int:
    """Microseconds since the epoch, exactly (``(a - b).total_seconds() == (micros(a) - micros(b)) / 1e6``).

    >>> micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC))
    1000005
    """
    return (at - EPOCH) // ONE_MICROSECOND


class AnswerCache:
    """Batch answers already read and scored, by stored id and fields, with the stamp of the
    hash they came from: a batch sends the stamps it holds and Redis returns only the hashes
    written since (``_BATCH_READ``), so a customer looked up again is neither decoded nor scored
    again. Scores as of now depend only on the hash and the published models (the purchase
    model's now, not the wall clock), so an answer stays exact until either changes: new models
    empty the cache. At most ``entries`` answers are kept (the oldest read are dropped first;
    0: none)."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        if entries < 0:
            raise ValueError(f"cache entries must be 0 or more (0: no cache), got {entries}")
        self.entries = entries
        self._found: dict[tuple[str, ...] | None, dict[str, Held]] = {}  # by fields asked for, by stored id
        self._models: ReadModels | None = None
        self.hits = self.misses = self.size = 0

    def __len__(self) -> int:
        return self.size

    def held(self, stored_ids: Sequence[str], names: tuple[str, ...] | None, models: ReadModels) -> list[Held | None]:
        """The answer held for each id under ``models`` (None: none)."""
        if models is not self._models:
            self._found.clear()
            self._models, self.size = models, 0
        found = self._found.get(names, {})
        return [found.get(sid) for sid in stored_ids]

    def resolve(self, ids: Sequence[str], stored_ids: Sequence[str], held: Sequence[Held | None],
                replies: Sequence[Any], names: tuple[str, ...] | None, now: datetime, max_age_seconds: float | None,
                models: ReadModels) -> list[tuple[str, Held | None]]:
        """Each id's answer from ``_BATCH_READ``'s replies to the ``held`` stamps: 1 is the answer
        held, else the hash read (None: no profile)."""
        resolved: list[tuple[str, Held | None]] = []
        for cid, sid, entry, reply in zip(ids, stored_ids, held, replies, strict=True):
            if reply == 1 and entry is not None:
                self.hits += 1
                resolved.append((cid, entry))
                continue
            self.misses += 1
            stored = _stored(reply, names)
            answer = to_lookup(cid, as_of_now(stored, models), names, now, max_age_seconds)
            found = self._found.setdefault(names, {})
            if answer is None:
                if found.pop(sid, None) is not None:  # erased
                    self.size -= 1
                resolved.append((cid, None))
                continue
            entry = Held(stamp(stored), answer)
            resolved.append((cid, entry))
            if self.entries and models is self._models and entry.stamp:
                if sid not in found:
                    self._make_room(found)
                found[sid] = entry
        return resolved


    def _make_room(self, found: dict[str, Held]) -> None:
        """Count one more answer, first dropping the oldest read (of these fields if any) when full."""
        if self.size < self.entries:
            self.size += 1
            return
        victims = found if found else next((held for held in self._found.values() if held), None)
        if victims is None:  # (the count went wrong: threads sharing a blocking client) count again
            self.size = sum(map(len, self._found.values())) + 1
            return
        del victims[next(iter(victims))]


def batch_json(resolved: Sequence[tuple[str, Held | None]], now: datetime, max_age_seconds: float | None) -> bytes:
    """The batch route's answer (:class:`schemas.api.BatchAnswer`) encoded, as its
    ``model_dump_json`` would (a test holds them equal)."""
    parts = [b'{"customers":{']
    missing = []
    now_us = micros(now)
    for cid, entry in resolved:
        if entry is None:
            missing.append(cid)
            continue
        if len(parts) > 1:
            parts.append(b",")
        entry.encode(parts, cid, now_us, max_age_seconds)
    parts += (b'},"missing":', to_json(missing), b"}")
    return b"".join(parts)


def _stored(reply: Any, names: tuple[str, ...] | None) -> dict[str, str]:
    """A hash as read: the script's flat field list, a pipeline's mapping, or HMGET's values."""
    if names is not None:
        return _as_mapping(reply, names)
    return dict(reply) if isinstance(reply, Mapping) else dict(zip(reply[::2], reply[1::2], strict=True))


def _no_scripting(exc: redis.ResponseError) -> bool:
    """Redis refused the batch script (an ACL user without ``+@scripting``): read without it."""
    if not isinstance(exc, redis.exceptions.NoPermissionError) and "NOPERM" not in str(exc):
        return False
    log.warning("lookups: Redis refused the batch script (%s); batches are read in full, nothing held. "
                "Give the lookup user +evalsha +script|load to hold answers (docs/api.md#held-batch-answers)", exc)
    return True


def _stamps(held: Sequence[Held | None]) -> list[str]:
    return [entry.stamp if entry is not None else "" for entry in held]


def _batch_args(stored_ids: Sequence[str], names: tuple[str, ...] | None, held: Sequence[str],
                prefix: str) -> tuple[list[str], list[str]]:
    read = _read_names(names) if names is not None else ()
    return [customer_key(sid, prefix) for sid in stored_ids], [str(len(read)), *read, "\n".join(held)]


class LookupClient:
    """Blocking lookups (redis-py), one round trip per call. Customers are looked up by the id
    producers send; with pseudonymous keys pass ``stored_id=settings.stored_id``. The published
    models are read with the customers and then kept ``models_ttl`` seconds (a newly published
    model is used within that; the workers publish every ``PULSE_PURCHASE_FIT_SECONDS``), so
    that most lookups are one Redis command."""

    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX,
                 clock: Clock = lambda: datetime.now(UTC), stored_id: Callable[[str], str] = str,
                 models_ttl: float = MODELS_TTL_SECONDS, monotonic: Callable[[], float] = time.monotonic,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self._client, self._prefix, self._clock, self._stored_id = client, prefix, clock, stored_id
        self._models = _ModelsCache(models_ttl, monotonic)
        self.cache = AnswerCache(cache_entries)
        self._batch_read = client.register_script(_BATCH_READ)
        self.scripting = True  # False once Redis refused the batch script (then nothing is held)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> LookupClient:
        return cls(redis.Redis.from_url(url, **_client_options()), **kwargs)

    def get(self, customer_id: str, fields: Iterable[str] | None = None,
            max_age_seconds: float | None = None) -> CustomerLookup | None:
        return self.get_many([customer_id], fields, max_age_seconds)[customer_id]

    def get_many(self, ids: Sequence[str], fields: Iterable[str] | None = None,
                 max_age_seconds: float | None = None) -> dict[str, CustomerLookup | None]:
        names = requested_fields(fields)
        stored_ids = [self._stored_id(cid) for cid in ids]
        models = self._models.fresh()
        if models is not None and len(ids) == 1:  # one command, without a pipeline's bookkeeping
            key = customer_key(stored_ids[0], self._prefix)
            raw = self._client.hgetall(key) if names is None else self._client.hmget(key, _read_names(names))
            return _lookups(ids, [raw], names, self._clock(), max_age_seconds, models)
        if models is None:
            pipe = self._client.pipeline(transaction=False)
            _queue_reads(pipe, [], names, self._prefix)
            models = self._models.keep(pipe.execute())
        held = self.cache.held(stored_ids, names, models) if self.scripting else [None] * len(ids)
        replies = None
        if self.scripting:
            keys, args = _batch_args(stored_ids, names, _stamps(held), self._prefix)
            try:
                replies = self._batch_read(keys=keys, args=args)
            except redis.ResponseError as exc:
                if not _no_scripting(exc):
                    raise
                self.scripting, self.cache = False, AnswerCache(0)
        if replies is None:
            pipe = self._client.pipeline(transaction=False)
            _queue_reads(pipe, stored_ids, names, self._prefix, models=False)
            replies = pipe.execute()
        now = self._clock()
        return {cid: entry.lookup(cid, now, max_age_seconds) if entry is not None else None for cid, entry in
                self.cache.resolve(ids, stored_ids, held, replies, names, now, max_age_seconds, models)}

    def segment_page(self, segment: str, cursor: str = "0", limit: int = 100) -> SegmentPage:
        return _page(segment, self._client.sscan(segment_key(segment, self._prefix), int(cursor), count=limit))

    def recent_alerts(self, kind: str | None = None, since: datetime | None = None,
                      limit: int = 100) -> list[dict[str, str]]:
        entries = self._client.xrevrange(f"{self._prefix}alerts", "+", _alert_range(since),
                                         count=limit if kind is None else ALERT_SCAN)
        return _alerts(entries, kind, limit)

    def affinity(self) -> dict[str, Any] | None:
        """The population's cross-sell rules as the workers last published them (None: none yet)."""
        return _document(self._client.get(f"{self._prefix}affinity"))

    def clusters(self) -> dict[str, Any] | None:
        """The behavioural clusters as the workers last published them (None: none yet)."""
        return _document(self._client.get(f"{self._prefix}clusters"))

    def close(self) -> None:
        self._client.close()


class AsyncLookupClient:
    """The same lookups on redis-py's asyncio client (what ``pulse serve`` uses)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX,
                 clock: Clock = lambda: datetime.now(UTC), stored_id: Callable[[str], str] = str,
                 models_ttl: float = MODELS_TTL_SECONDS, monotonic: Callable[[], float] = time.monotonic,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self._client, self._prefix, self._clock, self._stored_id = client, prefix, clock, stored_id
        self._models = _ModelsCache(models_ttl, monotonic)
        self.cache = AnswerCache(cache_entries)
        self._batch_read = client.register_script(_BATCH_READ)
        self.scripting = True  # False once Redis refused the batch script (then nothing is held)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncLookupClient:
        return cls(aioredis.Redis.from_url(url, **_client_options()), **kwargs)

    async def get_many(self, ids: Sequence[str], fields: Iterable[str] | None = None,
                       max_age_seconds: float | None = None) -> dict[str, CustomerLookup | None]:
        names = requested_fields(fields)
        stored_ids = [self._stored_id(cid) for cid in ids]
        models = self._models.fresh()
        if models is not None and len(ids) == 1:  # one command, without a pipeline's bookkeeping
            key = customer_key(stored_ids[0], self._prefix)
            raw = await (self._client.hgetall(key) if names is None  # type: ignore[misc]
                         else self._client.hmget(key, _read_names(names)))  # type: ignore[misc]
            return _lookups(ids, [raw], names, self._clock(), max_age_seconds, models)
        now, resolved = await self._resolve(ids, stored_ids, names, models, max_age_seconds)
        return {cid: entry.lookup(cid, now, max_age_seconds) if entry is not None else None for cid, entry in resolved}

    async def get_many_json(self, ids: Sequence[str], fields: Iterable[str] | None = None,
                            max_age_seconds: float | None = None) -> bytes:
        """``get_many`` as the batch route answers it: :class:`schemas.api.BatchAnswer`, encoded."""
        names = requested_fields(fields)
        now, resolved = await self._resolve(ids, [self._stored_id(cid) for cid in ids], names, self._models.fresh(),
                                            max_age_seconds)
        return batch_json(resolved, now, max_age_seconds)

    async def _resolve(self, ids: Sequence[str], stored_ids: Sequence[str], names: tuple[str, ...] | None,
                       models: ReadModels | None,
                       max_age_seconds: float | None) -> tuple[datetime, list[tuple[str, Held | None]]]:
        if models is None:
            async with self._client.pipeline(transaction=False) as pipe:
                _queue_reads(pipe, [], names, self._prefix)
                models = self._models.keep(await pipe.execute())
        held = self.cache.held(stored_ids, names, models) if self.scripting else [None] * len(ids)
        replies = None
        if self.scripting:
            keys, args = _batch_args(stored_ids, names, _stamps(held), self._prefix)
            try:
                replies = await self._batch_read(keys=keys, args=args)
            except redis.ResponseError as exc:
                if not _no_scripting(exc):
                    raise
                self.scripting, self.cache = False, AnswerCache(0)
        if replies is None:
            async with self._client.pipeline(transaction=False) as pipe:
                _queue_reads(pipe, stored_ids, names, self._prefix, models=False)
                replies = await pipe.execute()
        now = self._clock()
        return now, self.cache.resolve(ids, stored_ids, held, replies, names, now, max_age_seconds, models)

    async def get(self, customer_id: str, fields: Iterable[str] | None = None,
                  max_age_seconds: float | None = None) -> CustomerLookup | None:
        return (await self.get_many([customer_id], fields, max_age_seconds))[customer_id]

    async def receipt(self, request_id: str) -> dict[str, Any] | None:
        """An erasure's receipt (None until the worker and the sink have done it)."""
        found = await self._client.get(receipt_key(request_id, self._prefix))
        return json.loads(found) if found is not None else None

    async def segment_page(self, segment: str, cursor: str = "0", limit: int = 100) -> SegmentPage:
        answer = await self._client.sscan(segment_key(segment, self._prefix), int(cursor), count=limit)
        return _page(segment, answer)

    async def recent_alerts(self, kind: str | None = None, since: datetime | None = None,
                            limit: int = 100) -> list[dict[str, str]]:
        entries = await self._client.xrevrange(f"{self._prefix}alerts", "+", _alert_range(since),
                                               count=limit if kind is None else ALERT_SCAN)
        return _alerts(entries, kind, limit)

    async def affinity(self) -> dict[str, Any] | None:
        """The population's cross-sell rules as the workers last published them (None: none yet)."""
        return _document(await self._client.get(f"{self._prefix}affinity"))

    async def clusters(self) -> dict[str, Any] | None:
        """The behavioural clusters as the workers last published them (None: none yet)."""
        return _document(await self._client.get(f"{self._prefix}clusters"))

    async def recent_tag_changes(self, limit: int) -> list[dict[str, str]]:
        """The newest ``limit`` entries of the tag-change stream, oldest first."""
        entries = await self._client.xrevrange(f"{self._prefix}tags", "+", "-", count=limit)
        return [{str(k): str(v) for k, v in (fields or {}).items()} for _, fields in reversed(entries or [])]

    async def sample_fields(self, fields: Sequence[str], limit: int) -> list[dict[str, str]]:
        """These fields of up to ``limit`` customers (the first ``SCAN`` finds: a sample, not a
        ranking), with scores as of now as a lookup answers them. Scored a few hundred at a time,
        letting other requests in between."""
        keys: list[str] = []
        async for key in self._client.scan_iter(match=customer_key("*", self._prefix), count=1000):
            keys.append(str(key))
            if len(keys) >= limit:
                break
        names = tuple(fields)
        async with self._client.pipeline(transaction=False) as pipe:
            _queue_reads(pipe, [], names, self._prefix)
            for key in keys:
                pipe.hmget(key, _read_names(names))
            replies = await pipe.execute()
        models = self._models.keep(replies[:2])
        rows: list[dict[str, str]] = []
        for start in range(2, len(replies), SAMPLE_CHUNK):
            for raw in replies[start:start + SAMPLE_CHUNK]:
                now = as_of_now(_as_mapping(raw, names), models)
                rows.append({name: now[name] for name in names if now.get(name)})
            await asyncio.sleep(0)
        return rows

    async def segment_sizes(self, segments: Sequence[str]) -> dict[str, int]:
        async with self._client.pipeline(transaction=False) as pipe:
            for segment in segments:
                pipe.scard(segment_key(segment, self._prefix))
            sizes = await pipe.execute()
        return {segment: int(size) for segment, size in zip(segments, sizes, strict=True)}

    async def ping(self) -> bool:
        return bool(await self._client.ping())  # type: ignore[misc]

    async def close(self) -> None:
        await self._client.aclose()


def _document(stored: Any) -> dict[str, Any] | None:
    """A published JSON document (``pulse:affinity``, ``pulse:clusters``) decoded.

    >>> _document(None), _document(b'{"purchases": 3, "rules": []}')
    (None, {'purchases': 3, 'rules': []})
    """
    if not stored:
        return None
    document: dict[str, Any] = json.loads(stored)
    return document
