"""The Redis projection, written in pipelined batches, idempotently:

- ``pulse:cust:{customer_id}`` hashes, versioned (an older or equal version is ignored), with
  ``written_at``: the server's clock (epoch milliseconds) when this version was written;
- ``pulse:seg:{segment}`` sets, moved in the same script as the hash, so they agree with it;
- ``pulse:tags``, a capped stream of tag changes, each added once (by its change id);
- ``pulse:alerts``, a capped stream of churn-warning alerts, each added once (by its alert
  id) and published once on the ``pulse:alerts`` pub/sub channel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis.asyncio as aioredis

from schemas import Alert, Profile, TagChange
from stream.sinks.base import profile_fields

KEY_PREFIX = "pulse:"
TAG_STREAM_MAXLEN = 100_000
ALERT_STREAM_MAXLEN = 100_000
SEEN_CHANGE_TTL_SECONDS = 7 * 86_400

# KEYS[1] hash, KEYS[2] segment-set prefix; ARGV[1] version, ARGV[2] segment ('' if none),
# ARGV[3] customer id, ARGV[4..] field/value pairs.
_PROFILE = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
local old_segment = redis.call('HGET', KEYS[1], 'segment')
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'written_at', now[1] * 1000 + math.floor(now[2] / 1000), unpack(ARGV, 4))
if old_segment and old_segment ~= ARGV[2] then redis.call('SREM', KEYS[2] .. old_segment, ARGV[3]) end
if ARGV[2] ~= '' then redis.call('SADD', KEYS[2] .. ARGV[2], ARGV[3]) end
return 1
"""

# KEYS[1] seen-marker of this change, KEYS[2] the stream; ARGV[1] ttl, ARGV[2] maxlen, ARGV[3..] fields.
_TAG_CHANGE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
return 1
"""

# KEYS[1] seen-marker, KEYS[2] the stream, KEYS[3] the channel; ARGV[1] ttl, ARGV[2] maxlen,
# ARGV[3] the JSON message, ARGV[4..] stream fields.
_ALERT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"""


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
        self._profile = client.register_script(_PROFILE)
        self._tag_change = client.register_script(_TAG_CHANGE)
        self._alert = client.register_script(_ALERT)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisSink:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), **kwargs)  # type: ignore[arg-type]

    async def write_profiles(self, profiles: Sequence[Profile]) -> int:
        if not profiles:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for profile in profiles:
                fields = profile_fields(profile)
                args: list[str] = [fields["version"], profile.segment or "", profile.customer_id]
                for name, value in fields.items():
                    args += [name, value]
                keys = [customer_key(profile.customer_id, self._prefix), f"{self._prefix}seg:"]
                await self._profile(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def write_tag_changes(self, changes: Sequence[TagChange]) -> int:
        if not changes:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for change in changes:
                args: list[str] = [str(SEEN_CHANGE_TTL_SECONDS), str(TAG_STREAM_MAXLEN)]
                for name, value in change.model_dump(mode="json").items():
                    args += [name, "" if value is None else str(value)]
                keys = [f"{self._prefix}tags:seen:{change.change_id}", f"{self._prefix}tags"]
                await self._tag_change(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def write_alerts(self, alerts: Sequence[Alert]) -> int:
        """Add each alert to the stream and publish it on the channel, once per alert id.

        Stream fields are flat strings; ``explanation`` is JSON. The channel carries the
        whole alert as JSON."""
        if not alerts:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for alert in alerts:
                message = alert.model_dump_json()
                args: list[str] = [str(SEEN_CHANGE_TTL_SECONDS), str(ALERT_STREAM_MAXLEN), message]
                for name, value in alert.model_dump(mode="json").items():
                    text = json.dumps(value) if isinstance(value, list | dict) else "" if value is None else str(value)
                    args += [name, text]
                channel = f"{self._prefix}alerts"
                keys = [f"{self._prefix}alerts:seen:{alert.alert_id}", channel, channel]
                await self._alert(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

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
