"""The Redis projection, written in pipelined batches, idempotently:

- ``pulse:cust:{customer_id}`` hashes, versioned by (``event_version``, ``version``): the events
  applied, then the revision; an older or equal pair is ignored. (Not the revision alone: a
  batch whose profiles were written but whose state was lost in a crash is redone with its
  time-driven changes falling elsewhere, so its revisions can be lower.) With
  ``written_at``: the server's clock (epoch milliseconds) when this version was written, and
  ``stamp``, ``"{event_version}:{version}:{written_at}"``: what tells one write from another
  (lookups hold answers by it, ``stream/api/lookup.py``);
- ``pulse:seg:{segment}`` sets, moved in the same script as the hash, so they agree with it;
- ``pulse:tags``, a capped stream of tag changes, each added once: ``pulse:tags:applied``
  holds, per customer, the newest (event version, version x 16 + tag rank) added, as
  ``"{event_version}:{order}"``, and a change at or before it is a
  redelivery (a customer's changes reach the sink in order: one outbox partition, one
  consumer), so the guard is one hash field per customer, not one key per change;
- ``pulse:alerts``, a capped stream of churn-warning alerts, each added once (by its alert
  id) and published once on the ``pulse:alerts`` pub/sub channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from pydantic_core import to_json

from schemas import Alert, Profile, TagChange
from stream.sinks.base import cleared_fields, profile_fields, stream_fields, tag_order
from stream.sinks.outbox import RedisWrites

KEY_PREFIX = "pulse:"
PURCHASE_MODEL_KEY = f"{KEY_PREFIX}purchase-model"  # the fitted purchase model (stream/core/purchase.py)
AFFINITY_KEY = f"{KEY_PREFIX}affinity"  # the population's cross-sell rules (stream/core/affinity.py)
CLUSTERS_KEY = f"{KEY_PREFIX}clusters"  # the behavioural clusters' centroids (stream/core/clusters.py)
CHURN_MODEL_KEY = f"{KEY_PREFIX}churn-model"  # the churn scorer the workers use now (stream/model/params.py)
# The Redis streams whose entries carry a customer_id field (access exports and erasure read them).
CUSTOMER_STREAMS = {"tag_changes": "tags", "alerts": "alerts", "relay_dead_letters": "alerts:relay-dlq"}
TAG_STREAM_MAXLEN = 100_000
ALERT_STREAM_MAXLEN = 100_000
SEEN_CHANGE_TTL_SECONDS = 7 * 86_400

CHUNK = 500  # records per script call: one round trip each, and Redis is never blocked for long

# KEYS[1] the key prefix; ARGV: one JSON object per profile: id (customer), a (event version),
# v (version), s (segment, '' if none), f (field/value pairs), d (fields to delete: cleared ones).
# An older or equal (event version, version) is skipped (a hash without an event version, written
# by an older release, by its version alone).
_PROFILES = """
local prefix, written = KEYS[1], 0
local now = redis.call('TIME')
local at = now[1] * 1000 + math.floor(now[2] / 1000)
for i = 1, #ARGV do
  local p = cjson.decode(ARGV[i])
  local key = prefix .. 'cust:' .. p.id
  local current = redis.call('HMGET', key, 'version', 'segment', 'event_version')
  local newer = not current[1]
  if not newer then
    local version, applied = tonumber(current[1]), tonumber(current[3])
    if applied then
      newer = applied < p.a or (applied == p.a and version < p.v)
    else
      newer = version < p.v
    end
  end
  if newer then
    redis.call('HSET', key, 'written_at', at, 'stamp', p.a .. ':' .. p.v .. ':' .. at, unpack(p.f))
    if p.d and #p.d > 0 then redis.call('HDEL', key, unpack(p.d)) end
    if current[2] and current[2] ~= p.s then redis.call('SREM', prefix .. 'seg:' .. current[2], p.id) end
    if p.s ~= '' then redis.call('SADD', prefix .. 'seg:' .. p.s, p.id) end
    written = written + 1
  end
end
return written
"""

# KEYS[1] the key prefix; ARGV[1] stream maxlen; ARGV[2..] one JSON object per tag change:
# c (customer), a (event version), n (its order: version x 16 + the tag's rank), f (stream fields).
# A change at or before the customer's newest (a, n) added is skipped (an entry without an event
# version, added by an older release, is compared by n alone).
_TAGS = """
local prefix, written = KEYS[1], 0
local applied = prefix .. 'tags:applied'
for i = 2, #ARGV do
  local r = cjson.decode(ARGV[i])
  local newest, newer = redis.call('HGET', applied, r.c), true
  if newest then
    local sep = string.find(newest, ':', 1, true)
    if sep then
      local a, n = tonumber(string.sub(newest, 1, sep - 1)), tonumber(string.sub(newest, sep + 1))
      newer = a < r.a or (a == r.a and n < r.n)
    else
      newer = tonumber(newest) < r.n
    end
  end
  if newer then
    redis.call('XADD', prefix .. 'tags', 'MAXLEN', '~', ARGV[1], '*', unpack(r.f))
    redis.call('HSET', applied, r.c, string.format('%d:%d', r.a, r.n))
    written = written + 1
  end
end
return written
"""

# KEYS[1] the key prefix, KEYS[2] the stream ('alerts'); ARGV[1] ttl of the
# seen-markers, ARGV[2] stream maxlen, ARGV[3..] one JSON object per alert: id (alert id),
# f (stream fields), and m (the JSON published on the channel).
_ONCE_TO_STREAM = """
local prefix, name, written = KEYS[1], KEYS[2], 0
for i = 3, #ARGV do
  local r = cjson.decode(ARGV[i])
  if redis.call('SET', prefix .. name .. ':seen:' .. r.id, '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', prefix .. name, 'MAXLEN', '~', ARGV[2], '*', unpack(r.f))
    if r.m then redis.call('PUBLISH', prefix .. name, r.m) end
    written = written + 1
  end
end
return written
"""


def _flat(fields: dict[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[start:start + CHUNK] for start in range(0, len(items), CHUNK)]


def encode_profile(profile: Profile) -> str:
    """A profile as the hash script's argument: id, event version, version, segment, the hash
    fields and the cleared ones."""
    return to_json({"id": profile.customer_id, "a": profile.event_version, "v": profile.version,
                    "s": profile.segment or "",
                    "f": _flat(profile_fields(profile)), "d": cleared_fields(profile)}).decode()


def encode_tag_change(change: TagChange) -> str:
    """A tag change as the tag script's argument: its customer, event version, order and the entry's fields."""
    return to_json({"c": change.customer_id, "a": change.event_version, "n": tag_order(change),
                    "f": _flat(stream_fields(change))}).decode()


def encode_alert(alert: Alert, alert_json: str | None = None) -> str:
    """An alert as the stream script's argument: its id, the entry's fields (``explanation`` as
    JSON) and the whole alert as JSON for the pub/sub channel (``alert_json`` if already made)."""
    return to_json({"id": alert.alert_id, "m": alert_json or alert.model_dump_json(),
                    "f": _flat(stream_fields(alert))}).decode()


def customer_key(customer_id: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key of a customer's profile hash.

    >>> customer_key("c42")
    'pulse:cust:c42'
    """
    return f"{prefix}cust:{customer_id}"


def segment_key(segment: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis set of a segment's customers.

    >>> segment_key("At Risk")
    'pulse:seg:At Risk'
    """
    return f"{prefix}seg:{segment}"


class RedisSink:
    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._profiles = client.register_script(_PROFILES)
        self._tags = client.register_script(_TAGS)
        self._once_to_stream = client.register_script(_ONCE_TO_STREAM)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisSink:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), **kwargs)  # type: ignore[arg-type]

    async def write(self, writes: RedisWrites) -> int:
        """Apply encoded writes (``encode_*``) in one pipelined round; the number written."""
        if not writes:
            return 0
        alerts_head = [str(SEEN_CHANGE_TTL_SECONDS), str(ALERT_STREAM_MAXLEN)]
        async with self._client.pipeline(transaction=False) as pipe:
            for chunk in _chunks(writes.profiles):
                await self._profiles(keys=[self._prefix], args=chunk, client=pipe)
            for chunk in _chunks(writes.tag_changes):
                await self._tags(keys=[self._prefix], args=[str(TAG_STREAM_MAXLEN), *chunk], client=pipe)
            for chunk in _chunks(writes.alerts):
                await self._once_to_stream(keys=[self._prefix, "alerts"], args=[*alerts_head, *chunk], client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def write_profiles(self, profiles: Sequence[Profile]) -> int:
        return await self.write(RedisWrites(profiles=[encode_profile(p) for p in profiles]))

    async def write_tag_changes(self, changes: Sequence[TagChange]) -> int:
        return await self.write(RedisWrites(tag_changes=[encode_tag_change(c) for c in changes]))

    async def write_alerts(self, alerts: Sequence[Alert]) -> int:
        """Add each alert to the stream and publish it on the channel, once per alert id."""
        return await self.write(RedisWrites(alerts=[encode_alert(a) for a in alerts]))

    async def alerts(self) -> list[dict[str, str]]:
        entries = await self._client.xrange(f"{self._prefix}alerts") or []
        return [{str(k): str(v) for k, v in (fields or {}).items()} for _, fields in entries]

    async def read_profile(self, customer_id: str) -> dict[str, str] | None:
        found: dict[str, str] = await self._client.hgetall(  # type: ignore[misc,assignment]
            customer_key(customer_id, self._prefix))
        return found or None

    async def segment_members(self, segment: str) -> set[str]:
        return {str(m) for m in await self._client.smembers(segment_key(segment, self._prefix))}  # type: ignore[misc]

    async def tag_changes(self) -> list[dict[str, str]]:
        entries = await self._client.xrange(f"{self._prefix}tags") or []
        return [{str(k): str(v) for k, v in (fields or {}).items()} for _, fields in entries]

    async def close(self) -> None:
        await self._client.aclose()
