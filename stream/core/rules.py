"""Tags from scores and dates: RFM segment, value tier and lifecycle stage, by versioned rules.

The rules live in a YAML file (``stream/rules/default.yaml`` by default) validated at
start-up: ranges must be 1-5, segments must cover every (R, FM) cell, and lifecycle
thresholds must be ordered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stream.core.rfm import RfmScore

Score = Annotated[int, Field(ge=1, le=5)]


class RulesError(ValueError):
    """The rules file is invalid; the message names the file and the problem."""


class SegmentRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    r: tuple[Score, Score]
    fm: tuple[Score, Score]

    def matches(self, r: int, fm: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.fm[0] <= fm <= self.fm[1]


class TierRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    min_m: Score = 1
    min_f: Score = 1


class LifecycleRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    new_days: int = Field(30, gt=0)
    mature_days: int = Field(180, gt=0)
    declining_days: int = Field(90, gt=0)
    churned_days: int = Field(180, gt=0)
    reactivated_days: int = Field(60, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleRules:
        if not self.declining_days < self.churned_days:
            raise ValueError("declining_days must be less than churned_days")
        return self


class FixedThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    recency_days: tuple[int, int, int, int]
    orders: tuple[int, int, int, int]
    monetary: tuple[Decimal, Decimal, Decimal, Decimal]

    @model_validator(mode="after")
    def _monotonic(self) -> FixedThresholds:
        if list(self.recency_days) != sorted(self.recency_days, reverse=True):
            raise ValueError("recency_days must decrease (e.g. [365, 180, 90, 30])")
        if list(self.orders) != sorted(self.orders) or list(self.monetary) != sorted(self.monetary):
            raise ValueError("orders and monetary thresholds must increase")
        return self

    def score(self, *, days_since_last_purchase: float, orders: int, monetary_cents: int) -> RfmScore:
        """Scores by thresholds.

        >>> t = FixedThresholds(recency_days=(365, 180, 90, 30), orders=(2, 3, 5, 8),
        ...                     monetary=(100, 250, 500, 1000))
        >>> t.score(days_since_last_purchase=45, orders=3, monetary_cents=25_000)
        RfmScore(r=4, f=3, m=3)
        """
        money = Decimal(monetary_cents) / 100
        return RfmScore(
            r=1 + sum(1 for limit in self.recency_days if days_since_last_purchase <= limit),
            f=1 + sum(1 for limit in self.orders if orders >= limit),
            m=1 + sum(1 for limit in self.monetary if money >= limit),
        )

    def next_recency_change(self, last_purchase_at: datetime, now: datetime) -> datetime | None:
        """The next moment the R score drops with no new purchase."""
        for limit in sorted(self.recency_days):
            moment = last_purchase_at + timedelta(days=limit)
            if moment >= now:
                return moment + timedelta(microseconds=1)  # "more than N days" starts just after
        return None


class Scoring(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["population", "fixed"] = "population"
    fixed: FixedThresholds | None = None

    @model_validator(mode="after")
    def _fixed_needs_thresholds(self) -> Scoring:
        if self.mode == "fixed" and self.fixed is None:
            raise ValueError("scoring.mode fixed needs scoring.fixed thresholds")
        return self


class BehaviourRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_orders: int = Field(4, ge=2)
    seasonal_share: float = Field(0.6, gt=0, le=1)
    seasonal_weeks: int = Field(13, ge=1, le=52)


def behaviour_type(rules: BehaviourRules, score: RfmScore,
                   weekly_orders: dict[int, int]) -> str:
    """The behaviour type from a customer's orders per week (week index -> orders).

    >>> b = BehaviourRules()
    >>> behaviour_type(b, RfmScore(3, 3, 3), {2800 + w: 1 for w in range(0, 52, 4)})
    'regular'
    >>> behaviour_type(b, RfmScore(3, 3, 3), {2850: 3, 2851: 2, 2800: 1})
    'seasonal'
    >>> behaviour_type(b, RfmScore(3, 5, 1), {2800 + w: 1 for w in range(0, 52, 4)})
    'high-frequency low-value'
    """
    total = sum(weekly_orders.values())
    if total >= rules.min_orders:
        weeks = sorted(weekly_orders)
        best = max(sum(n for w, n in weekly_orders.items() if start <= w < start + rules.seasonal_weeks)
                   for start in weeks)
        if best / total >= rules.seasonal_share:
            return "seasonal"
    if score.f >= 4 and score.m <= 2:
        return "high-frequency low-value"
    if score.f <= 2 and score.m >= 4:
        return "low-frequency high-value"
    return "regular"


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1)
    scoring: Scoring
    segments: tuple[SegmentRule, ...]
    value_tiers: tuple[TierRule, ...]
    lifecycle: LifecycleRules = Field(default_factory=lambda: LifecycleRules())
    behaviour: BehaviourRules = Field(default_factory=lambda: BehaviourRules())

    @model_validator(mode="after")
    def _complete(self) -> Rules:
        uncovered = [(r, fm) for r in range(1, 6) for fm in range(1, 6)
                     if not any(rule.matches(r, fm) for rule in self.segments)]
        if uncovered:
            raise ValueError(f"segments leave these (R, FM) cells without a segment: {uncovered}")
        if not any(t.min_m == 1 and t.min_f == 1 for t in self.value_tiers):
            raise ValueError("value_tiers need a rule with min_m 1 and min_f 1 (a tier for everyone)")
        return self

    def with_scoring_mode(self, mode: Literal["population", "fixed"]) -> Rules:
        """These rules scoring by ``mode`` instead (validated again)."""
        return Rules.model_validate({**self.model_dump(), "scoring": {**self.scoring.model_dump(), "mode": mode}})

    def segment(self, score: RfmScore) -> str:
        """The first matching segment.

        >>> rules = load_rules()
        >>> [rules.segment(RfmScore(*s)) for s in ((5, 5, 5), (1, 5, 4), (1, 1, 1))]
        ['Champions', "Can't Lose Them", 'Lost']
        """
        fm = fm_score(score)
        return next(rule.name for rule in self.segments if rule.matches(score.r, fm))

    def value_tier(self, score: RfmScore) -> str:
        """The first tier whose minimum scores the customer meets.

        >>> load_rules().value_tier(RfmScore(3, 4, 5)), load_rules().value_tier(RfmScore(3, 1, 2))
        ('diamond', 'bronze')
        """
        return next(t.name for t in self.value_tiers if score.m >= t.min_m and score.f >= t.min_f)


def fm_score(score: RfmScore) -> int:
    """The mean of F and M, rounded half up: (4, 5) -> 5, (2, 3) -> 3, (1, 2) -> 2."""
    return int((Decimal(score.f + score.m) / 2).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Lifecycle(StrEnum):
    PROSPECT = "prospect"
    NEW = "new"
    GROWING = "growing"
    MATURE = "mature"
    DECLINING = "declining"
    CHURNED = "churned"
    REACTIVATED = "reactivated"


def lifecycle_stage(rules: LifecycleRules, *, now: datetime, orders: int,
                    first_purchase_at: datetime | None, last_purchase_at: datetime | None,
                    previous_purchase_at: datetime | None) -> Lifecycle:
    """The stage at event time ``now``.

    >>> from datetime import UTC
    >>> d = lambda day: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day)
    >>> r = LifecycleRules()
    >>> [lifecycle_stage(r, now=d(n), orders=3, first_purchase_at=d(0), last_purchase_at=d(10),
    ...                  previous_purchase_at=d(5)).value for n in (20, 150, 200)]
    ['growing', 'declining', 'churned']
    """
    if orders == 0 or first_purchase_at is None or last_purchase_at is None:
        return Lifecycle.PROSPECT
    silent = now - last_purchase_at
    if silent >= timedelta(days=rules.churned_days):
        return Lifecycle.CHURNED
    if silent >= timedelta(days=rules.declining_days):
        return Lifecycle.DECLINING
    if (previous_purchase_at is not None
            and last_purchase_at - previous_purchase_at >= timedelta(days=rules.churned_days)
            and silent < timedelta(days=rules.reactivated_days)):
        return Lifecycle.REACTIVATED
    if orders == 1 and now - first_purchase_at < timedelta(days=rules.new_days):
        return Lifecycle.NEW
    if now - first_purchase_at < timedelta(days=rules.mature_days):
        return Lifecycle.GROWING
    return Lifecycle.MATURE


def next_lifecycle_boundary(rules: LifecycleRules, *, now: datetime, orders: int,
                            first_purchase_at: datetime | None, last_purchase_at: datetime | None,
                            previous_purchase_at: datetime | None) -> datetime | None:
    """The earliest event time after ``now`` at which the stage would change with no new event.

    >>> from datetime import UTC
    >>> d = lambda day: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day)
    >>> next_lifecycle_boundary(LifecycleRules(), now=d(20), orders=3, first_purchase_at=d(0),
    ...                         last_purchase_at=d(10), previous_purchase_at=d(5)).date()
    datetime.date(2024, 4, 10)
    """
    if orders == 0 or first_purchase_at is None or last_purchase_at is None:
        return None
    candidates = [
        last_purchase_at + timedelta(days=rules.declining_days),
        last_purchase_at + timedelta(days=rules.churned_days),
        last_purchase_at + timedelta(days=rules.reactivated_days),
        first_purchase_at + timedelta(days=rules.new_days),
        first_purchase_at + timedelta(days=rules.mature_days),
    ]
    kwargs = {"orders": orders, "first_purchase_at": first_purchase_at,
              "last_purchase_at": last_purchase_at, "previous_purchase_at": previous_purchase_at}
    current = lifecycle_stage(rules, now=now, **kwargs)  # type: ignore[arg-type]
    for moment in sorted(c for c in candidates if c > now):
        if lifecycle_stage(rules, now=moment, **kwargs) is not current:  # type: ignore[arg-type]
            return moment
    return None


def load_rules(path: Path | str | None = None) -> Rules:
    """Read and validate a rules file (the packaged default when ``path`` is None)."""
    if path is None:
        text = (resources.files("stream.rules") / "default.yaml").read_text(encoding="utf-8")
        where = "stream/rules/default.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read rules file {path}: {exc}") from None
        where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{where} is not valid YAML: {exc}") from None
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
                             for e in exc.errors())
        raise RulesError(f"{where}: {problems}") from None
