"""An in-memory sink with the same versioned semantics as Redis, for tests and dry runs."""

from __future__ import annotations

from collections.abc import Sequence

from schemas import Profile
from stream.sinks.base import profile_fields


class MemorySink:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    async def write_profiles(self, profiles: Sequence[Profile]) -> int:
        written = 0
        for profile in profiles:
            current = self.hashes.get(profile.customer_id)
            if current is not None and int(current["version"]) >= profile.version:
                continue
            self.hashes[profile.customer_id] = {**(current or {}), **profile_fields(profile)}
            written += 1
        return written

    async def read_profile(self, customer_id: str) -> dict[str, str] | None:
        found = self.hashes.get(customer_id)
        return dict(found) if found is not None else None
