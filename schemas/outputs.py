"""What the processor publishes: tag changes on ``pulse.tag-changes``."""

from __future__ import annotations

from typing import Literal

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
    version: int  # the state revision it came with
    rules_version: str
    # The events applied to the state then (``Profile.event_version``): the tag stream adds a
    # customer's changes in (event_version, version, tag) order, each once.
    event_version: int = 0


class Contribution(BaseModel):
    """One feature's part in a churn score (for the heuristic and linear models: weight x value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    contribution: float


class Alert(BaseModel):
    """A churn warning on ``pulse.alerts`` (and the Redis ``pulse:alerts`` stream and channel).

    ``alert_id`` is deterministic (customer, kind, state revision), so a replay or a
    redelivery never raises the same alert twice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    customer_id: str
    kind: Literal["churn_risk", "activity_drop", "inactivity", "segment_downgrade", "high_value_at_risk",
                  "complaint_spike", "suspicious_transaction"]
    severity: Literal["low", "medium", "high"]
    score: float | None
    threshold: float | None = None  # the churn_risk threshold of the scorer behind ``score``
    reason: str
    explanation: tuple[Contribution, ...] = ()
    event_time: AwareDatetime
    model_version: str
    rules_version: str
    segment: str | None = None
    value_tier: str | None = None
    # may the customer be contacted for marketing? their newest stated consent (None: never stated)
    marketing_allowed: bool | None = None
    # in the control group (stream/core/holdout.py): recorded and measured, but triggers skip it
    holdout: bool = False


class AlertOutcome(BaseModel):
    """An alert's outcome on ``pulse.alert-outcomes``: did the customer purchase within
    ``horizon_days`` after it (event time)? Resolved by the first purchase after the alert, or
    when the horizon passes without one; ``pulse uplift-report`` compares treated and held-out
    customers on these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    customer_id: str
    kind: str
    holdout: bool
    alerted_at: AwareDatetime
    resolved_at: AwareDatetime
    converted: bool
    horizon_days: int


class ChurnLabel(BaseModel):
    """A resolved prediction on ``pulse.churn-labels``: the features at ``predicted_at`` and
    whether the customer then went ``horizon_days`` without a purchase (1) or bought (0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label_id: str  # customer and prediction time: deterministic, so the trainer can drop repeats
    customer_id: str
    predicted_at: AwareDatetime
    resolved_at: AwareDatetime
    label: int
    features: dict[str, float]
    score: float | None
    model_version: str
