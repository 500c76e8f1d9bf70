"""Models the workers publish to Redis for readers that score as of now (``pulse export``,
the lookup API): one JSON value per key, written when it changed and retried at the next
tick when Redis cannot take it."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

from stream.settings import Settings

log = logging.getLogger(__name__)


async def set_json(settings: Settings, key: str, value: Any, what: str) -> bool:
    """Write ``value`` as JSON to ``key``; False (logged) when Redis cannot take it now."""
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        await client.set(key, json.dumps(value))
        return True
    except (aioredis.RedisError, OSError) as exc:
        log.warning("%s: cannot write it to Redis (retried at the next tick): %s", what, exc)
        return False
    finally:
        await client.aclose()


async def get_json(settings: Settings, key: str, what: str) -> Any:
    """The JSON value at ``key``: None when absent, unreadable or Redis cannot answer (logged)."""
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        stored = await client.get(key)
        return json.loads(stored) if stored is not None else None
    except (aioredis.RedisError, OSError, ValueError) as exc:
        log.warning("%s: cannot read it from Redis: %s", what, exc)
        return None
    finally:
        await client.aclose()
