"""An in-memory sink with the same semantics as Redis, for tests and dry runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from schemas import Alert, Profile, TagChange
from stream.sinks.base import cleared_fields, profile_fields, stream_fields, tag_order


class MemorySink:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.hashes: dict[str, dict[str, str]] = {}
        self.segments: dict[str, set[str]] = {}
        self.stream: list[dict[str, str]] = []
        self._tags_applied: dict[str, tuple[int, int]] = {}
        self.alert_stream: list[dict[str, str]] = []
        self._seen_alerts: set[str] = set()

    async def write_profiles(self, profiles: Sequence[Profile]) -> int:
        written = 0
        for profile in profiles:
            current = self.hashes.get(profile.customer_id)
            if current is not None and (int(current["event_version"]), int(current["version"])) >= (
                    profile.event_version, profile.version):
                continue  # not newer, by (event version, version) as the Redis sink's script orders them
            old_segment = (current or {}).get("segment")
            kept = {name: value for name, value in (current or {}).items() if name not in cleared_fields(profile)}
            written_at = str(int(self.clock() * 1000))
            self.hashes[profile.customer_id] = {**kept, **profile_fields(profile), "written_at": written_at,
                                                "stamp": f"{profile.event_version}:{profile.version}:{written_at}"}
            if old_segment and old_segment != (profile.segment or ""):
                self.segments.get(old_segment, set()).discard(profile.customer_id)
            if profile.segment:
                self.segments.setdefault(profile.segment, set()).add(profile.customer_id)
            written += 1
        return written

    async def write_tag_changes(self, changes: Sequence[TagChange]) -> int:
        written = 0
        for change in changes:
            order = (change.event_version, tag_order(change))
            if order <= self._tags_applied.get(change.customer_id, (-1, -1)):
                continue  # at or before the newest change added for the customer: a redelivery
            self._tags_applied[change.customer_id] = order
            self.stream.append(stream_fields(change))
            written += 1
        return written

    async def write_alerts(self, alerts: Sequence[Alert]) -> int:
        written = 0
        for alert in alerts:
            if alert.alert_id in self._seen_alerts:
                continue
            self._seen_alerts.add(alert.alert_id)
            self.alert_stream.append(stream_fields(alert))
            written += 1
        return written

    async def read_profile(self, customer_id: str) -> dict[str, str] | None:
        found = self.hashes.get(customer_id)
        return dict(found) if found is not None else None

    async def segment_members(self, segment: str) -> set[str]:
        return set(self.segments.get(segment, set()))

    async def tag_changes(self) -> list[dict[str, str]]:
        return list(self.stream)

    async def alerts(self) -> list[dict[str, str]]:
        return list(self.alert_stream)
