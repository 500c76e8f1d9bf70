"""The Redis outbox: the Redis writes of a batch, as records of the internal
``redis-outbox`` topic.

The profile agent computes a batch's profiles, tag changes and alerts, encodes them as the
Redis scripts' arguments (``stream.sinks.redis.encode_*``) and sends them, a few hundred
per record, before the batch's offsets are committed. The Redis sink agent applies each
record with one pipelined round. So a crash between the state and Redis loses nothing (the
outbox is in Kafka before the batch counts as done), and the sink decodes one record per
batch instead of one per profile, change and alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydantic_core import to_json

MAX_RECORD_BYTES = 512 * 1024  # well below the broker's default message.max.bytes (1 MB)
_KINDS = ("profiles", "tag_changes", "alerts", "erasures")


class OutboxError(ValueError):
    """A record of the outbox topic that is not an outbox record."""


@dataclass
class RedisWrites:
    """Encoded Redis writes, in order within each kind."""

    profiles: list[str] = field(default_factory=list)
    tag_changes: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    erasures: list[str] = field(default_factory=list)  # Erasure JSON (stream/core/erasure.py), after the rest
    input_ms: int | None = None  # Kafka timestamp of the batch's oldest input record (for latency metrics)

    def __bool__(self) -> bool:
        return bool(self.profiles or self.tag_changes or self.alerts or self.erasures)

    def __len__(self) -> int:
        return len(self.profiles) + len(self.tag_changes) + len(self.alerts) + len(self.erasures)

    @classmethod
    def merge(cls, parts: Iterable[RedisWrites]) -> RedisWrites:
        merged = cls()
        for part in parts:
            merged.profiles += part.profiles
            merged.tag_changes += part.tag_changes
            merged.alerts += part.alerts
            merged.erasures += part.erasures
            if part.input_ms is not None:
                merged.input_ms = min(part.input_ms, merged.input_ms or part.input_ms)
        return merged

    def to_records(self, max_bytes: int = MAX_RECORD_BYTES) -> list[bytes]:
        """The writes as outbox record values, each at most about ``max_bytes`` long (an item
        longer than that goes alone in its record).

        >>> writes = RedisWrites(profiles=["a" * 60, "b" * 60], alerts=["c"], input_ms=7)
        >>> [RedisWrites.from_record(record) for record in writes.to_records(100)] == [
        ...     RedisWrites(profiles=["a" * 60], input_ms=7),
        ...     RedisWrites(profiles=["b" * 60], alerts=["c"], input_ms=7)]
        True
        """
        stamp = {} if self.input_ms is None else {"t": self.input_ms}
        return [to_json({**chunk, **stamp}) for chunk in self._chunks(max_bytes)]

    def _chunks(self, max_bytes: int) -> Iterator[dict[str, list[str]]]:
        chunk: dict[str, list[str]] = {}
        size = 0
        for kind in _KINDS:
            for item in getattr(self, kind):
                cost = len(item) + 8  # quotes, comma and escapes of a JSON string, roughly
                if chunk and size + cost > max_bytes:
                    yield chunk
                    chunk, size = {}, 0
                chunk.setdefault(kind, []).append(item)
                size += cost
        if chunk:
            yield chunk

    @classmethod
    def from_record(cls, value: bytes | None) -> RedisWrites:
        """Decode an outbox record value.

        >>> RedisWrites.from_record(b'{"alerts": ["x"], "t": 1764590400000}')
        RedisWrites(profiles=[], tag_changes=[], alerts=['x'], erasures=[], input_ms=1764590400000)
        >>> try:
        ...     RedisWrites.from_record(b'[]')
        ... except OutboxError as exc:
        ...     print(exc)
        not an outbox record: expected a JSON object of string lists
        """
        try:
            data = json.loads(value or b"")
        except ValueError as exc:
            raise OutboxError(f"not an outbox record: {exc}") from None
        input_ms = data.pop("t", None) if isinstance(data, dict) else None
        if not isinstance(data, dict) or set(data) - set(_KINDS) or not isinstance(input_ms, int | None) or not all(
                isinstance(items, list) and all(isinstance(item, str) for item in items) for items in data.values()):
            raise OutboxError("not an outbox record: expected a JSON object of string lists")
        return cls(**data, input_ms=input_ms)
