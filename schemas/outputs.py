"""What the processor publishes: tag changes on ``pulse.tag-changes``."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict


class CustomerTags(BaseModel):
    """A customer's current tags (kept in the state; mirrored into the Redis hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int | None = None
    f: int | None = None
    m: int | None = None
    segment: str | None = None
    value_tier: str | None = None
    lifecycle: str = "prospect"
    behaviour: str | None = None
    rules_version: str = ""
    as_of: AwareDatetime | None = None

    def tag_values(self) -> dict[str, str | None]:
        return {"segment": self.segment, "value_tier": self.value_tier, "lifecycle": self.lifecycle,
                "behaviour": self.behaviour, "rfm": None if self.r is None else f"{self.r}{self.f}{self.m}"}


class TagChange(BaseModel):
    """One tag of one customer changed. ``change_id`` is deterministic, so replays are idempotent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    change_id: str
    customer_id: str
    tag: str
    old: str | None
    new: str | None
    reason: str
    event_time: AwareDatetime
    version: int
    rules_version: str
