"""The Redis projection: ``pulse:cust:{customer_id}`` hashes written in pipelined, versioned batches."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from schemas import Profile
from stream.sinks.base import profile_fields

KEY_PREFIX = "pulse:"

# Write only when the incoming version is newer: replays and reordering never regress a hash.
_VERSIONED_HSET = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def customer_key(customer_id: str, prefix: str = KEY_PREFIX) -> str:
    """The Redis key of a customer's profile hash.

    >>> customer_key("c42")
    'pulse:cust:c42'
    """
    return f"{prefix}cust:{customer_id}"


class RedisSink:
    def __init__(self, client: aioredis.Redis, *, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._hset = client.register_script(_VERSIONED_HSET)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisSink:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), **kwargs)  # type: ignore[arg-type]

    async def write_profiles(self, profiles: Sequence[Profile]) -> int:
        if not profiles:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for profile in profiles:
                fields = profile_fields(profile)
                args: list[str] = [fields["version"]]
                for name, value in fields.items():
                    args += [name, value]
                key = customer_key(profile.customer_id, self._prefix)
                await self._hset(keys=[key], args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def read_profile(self, customer_id: str) -> dict[str, str] | None:
        found: dict[str, str] = await self._client.hgetall(  # type: ignore[misc,assignment]
            customer_key(customer_id, self._prefix))
        return found or None

    async def close(self) -> None:
        await self._client.aclose()
