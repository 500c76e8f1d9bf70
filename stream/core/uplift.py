"""The uplift of alert-driven interventions: treated against held-out customers, per alert kind.

Every alert resolves into an :class:`~schemas.AlertOutcome` (a purchase within the horizon
after it, or none). Customers in the control group (:mod:`stream.core.holdout`) got the same
alerts, but no intervention; the difference between the two groups' conversion rates is what
the interventions added. The interval is Newcombe's hybrid score interval for a difference of
two independent proportions (his method 10), built from the groups' Wilson score intervals:
it stays inside [-1, 1] and keeps its coverage for small groups and rates near 0 or 1, where
the normal-approximation interval does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy.stats import norm

from schemas import AlertOutcome


@dataclass(frozen=True)
class Group:
    """One group's customers with a resolved alert (their first), and how many converted."""

    alerts: int = 0
    converted: int = 0

    @property
    def rate(self) -> float | None:
        return self.converted / self.alerts if self.alerts else None

    def wilson(self, z: float) -> tuple[float, float]:
        """Wilson's score interval of the rate.

        >>> [round(x, 4) for x in Group(100, 30).wilson(1.959964)]
        [0.2189, 0.3958]
        """
        n, p = self.alerts, self.converted / self.alerts
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class KindUplift:
    """Treated against held-out customers for one alert kind."""

    kind: str
    treated: Group
    holdout: Group
    confidence: float

    @property
    def uplift(self) -> float | None:
        """Treated conversion rate minus held-out conversion rate (None: a group is empty)."""
        if self.treated.rate is None or self.holdout.rate is None:
            return None
        return self.treated.rate - self.holdout.rate

    @property
    def interval(self) -> tuple[float, float] | None:
        """Newcombe's hybrid score interval of the uplift.

        Newcombe (1998), table II, examples (a) and (d):

        >>> [round(x, 4) for x in KindUplift("k", Group(70, 56), Group(80, 48), 0.95).interval]
        [0.0524, 0.3339]
        >>> [round(x, 4) for x in KindUplift("k", Group(56, 5), Group(29, 0), 0.95).interval]
        [-0.0381, 0.1926]
        """
        if self.uplift is None or self.treated.rate is None or self.holdout.rate is None:
            return None
        z = float(norm.ppf(0.5 + self.confidence / 2))
        (l1, u1), (l2, u2) = self.treated.wilson(z), self.holdout.wilson(z)
        p1, p2 = self.treated.rate, self.holdout.rate
        return (self.uplift - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
                self.uplift + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))

    def to_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {"kind": self.kind,
                "treated": {"alerts": self.treated.alerts, "converted": self.treated.converted,
                            "rate": self.treated.rate},
                "holdout": {"alerts": self.holdout.alerts, "converted": self.holdout.converted,
                            "rate": self.holdout.rate},
                "uplift": self.uplift, "confidence": self.confidence,
                "interval": list(interval) if interval else None}


def uplift_report(outcomes: Iterable[AlertOutcome], confidence: float = 0.95, kinds: Iterable[str] = (),
                  since: datetime | None = None, until: datetime | None = None) -> list[KindUplift]:
    """Per alert kind (those in ``kinds``, or all), the treated and held-out groups' conversions
    over the alerts raised in [``since``, ``until``).

    The unit is the customer: each customer's first resolved alert of a kind in the window. Later
    alerts are not independent of the treatment (an intervention that brings a customer back
    starts a new silence, and with it a new alert that a held-out customer never gets), so
    counting them would compare unlike groups. An outcome delivered twice (at-least-once) counts
    once: its ``alert_id`` is deterministic."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    wanted = set(kinds)
    first: dict[tuple[str, str], AlertOutcome] = {}
    for outcome in outcomes:
        if (wanted and outcome.kind not in wanted) or (since and outcome.alerted_at < since) \
                or (until and outcome.alerted_at >= until):
            continue
        unit = (outcome.kind, outcome.customer_id)
        known = first.get(unit)
        if known is None or (outcome.alerted_at, outcome.alert_id) < (known.alerted_at, known.alert_id):
            first[unit] = outcome
    counts: dict[tuple[str, bool], list[int]] = {}
    for outcome in first.values():
        tally = counts.setdefault((outcome.kind, outcome.holdout), [0, 0])
        tally[0] += 1
        tally[1] += outcome.converted
    return [KindUplift(kind, Group(*counts.get((kind, False), (0, 0))), Group(*counts.get((kind, True), (0, 0))),
                       confidence)
            for kind in sorted({kind for kind, _ in counts})]


def report_lines(report: list[KindUplift]) -> list[str]:
    """The report as a table for people."""
    if not report:
        return ["no resolved alert outcomes yet (an alert resolves at the first purchase after it, "
                "or when its horizon passes)"]

    def rate(group: Group) -> str:
        return f"{group.converted:>6}/{group.alerts:<6} {group.rate:6.1%}" if group.rate is not None else \
            f"{'0/0':>13} {'—':>6}"

    lines = [f"{'kind':<20} {'treated':>20} {'held out':>20} {'uplift':>8}  interval",
             f"{'':<20} {'converted/alerts':>20} {'converted/alerts':>20}"]
    for row in report:
        interval = row.interval
        uplift = f"{row.uplift:+.1%}" if row.uplift is not None else "—"
        shown = f"[{interval[0]:+.1%}, {interval[1]:+.1%}] ({row.confidence:.0%})" if interval else \
            "— (a group has no resolved alerts)"
        lines.append(f"{row.kind:<20} {rate(row.treated):>20} {rate(row.holdout):>20} {uplift:>8}  {shown}")
    return lines
