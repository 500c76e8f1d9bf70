"""How good the churn warnings are, against the generator's hidden ground truth.

A churner counts as *warned in time* when a ``churn_risk`` alert (or ``high_value_at_risk``,
raised with it) reached them after their last purchase and before they had been silent for
H days, silence starting at their last event of any kind. Only churners whose H days of
silence end before the data does (less the allowed lateness, which holds the watermark
back) can be judged; the others are not yet due.

Precision, two ways: of the customers who got a churn alert, the share who really churn
(by the ground truth); and of the churn alerts old enough to judge, the share after which
the customer made no purchase within H days (the label definition of churn).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stream.core.alerts import CHURN_WARNINGS

CHURN_KINDS = CHURN_WARNINGS


@dataclass(frozen=True)
class ChurnReport:
    churners: int
    judged: int  # churners whose H days of silence ended inside the data
    warned_in_time: int
    alerted_customers: int
    alerted_churners: int
    judged_alerts: int  # churn alerts at least H days before the data ends
    alerts_followed_by_no_purchase: int
    median_lead_days: float | None  # how long before the H-day mark the warning came
    alerts_by_kind: dict[str, int]

    @property
    def recall(self) -> float:
        return self.warned_in_time / self.judged if self.judged else 0.0

    @property
    def precision(self) -> float:
        return self.alerted_churners / self.alerted_customers if self.alerted_customers else 0.0

    @property
    def alert_precision(self) -> float:
        return self.alerts_followed_by_no_purchase / self.judged_alerts if self.judged_alerts else 0.0

    def lines(self) -> list[str]:
        lead = f"{self.median_lead_days:.1f}" if self.median_lead_days is not None else "-"
        return [
            f"churners: {self.churners}, judged (silent for H days before the data ends): {self.judged}",
            f"warned before H days of silence: {self.warned_in_time} -> recall {self.recall:.3f}",
            f"customers with a churn alert: {self.alerted_customers}, of whom churn: {self.alerted_churners} "
            f"-> precision {self.precision:.3f}",
            f"churn alerts judged: {self.judged_alerts}, followed by no purchase within H days: "
            f"{self.alerts_followed_by_no_purchase} -> alert precision {self.alert_precision:.3f}",
            f"median warning lead before the H-day mark: {lead} days",
            "alerts by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(self.alerts_by_kind.items())),
        ]


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def churn_report(events: Iterable[Mapping[str, Any]], truth: Iterable[Mapping[str, Any]],
                 alerts: Iterable[Mapping[str, Any]], *, horizon_days: int,
                 lateness: timedelta) -> ChurnReport:
    """
    >>> ev = [{"customer_id": "a", "event_time": "2024-01-01T00:00:00+00:00"},
    ...       {"customer_id": "b", "event_time": "2024-06-01T00:00:00+00:00"}]
    >>> truth = [{"customer_id": "a", "churns": True}, {"customer_id": "b", "churns": False}]
    >>> al = [{"customer_id": "a", "kind": "churn_risk", "event_time": "2024-02-01T00:00:00+00:00"},
    ...       {"customer_id": "b", "kind": "churn_risk", "event_time": "2024-06-02T00:00:00+00:00"}]
    >>> r = churn_report(ev, truth, al, horizon_days=90, lateness=timedelta(days=3))
    >>> r.judged, r.recall, r.precision, r.median_lead_days, r.judged_alerts, r.alert_precision
    (1, 1.0, 0.5, 59.0, 1, 1.0)

    An event without a readable event time (dead-lettered by the pipeline) is left out:

    >>> unreadable = {"customer_id": "a", "event_time": "unknown"}
    >>> churn_report([*ev, unreadable], truth, al, horizon_days=90, lateness=timedelta(days=3)) == r
    True
    """
    last_event: dict[str, datetime] = {}
    purchases: dict[str, list[datetime]] = {}
    for event in events:
        try:
            when = _time(event["event_time"])
        except ValueError:  # dead-lettered by the pipeline (`pulse generate --incident invalid:...`)
            continue
        cid = str(event["customer_id"])
        if cid not in last_event or when > last_event[cid]:
            last_event[cid] = when
        if event.get("type", "purchase") == "purchase":
            purchases.setdefault(cid, []).append(when)
    if not last_event:
        raise ValueError("no events: nothing to evaluate")
    judged_until = max(last_event.values()) - lateness
    horizon = timedelta(days=horizon_days)
    churns = {str(t["customer_id"]): bool(t["churns"]) for t in truth}

    churn_alerts: dict[str, list[datetime]] = {}
    by_kind: dict[str, int] = {}
    for alert in alerts:
        kind = str(alert["kind"])
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if kind in CHURN_KINDS:
            churn_alerts.setdefault(str(alert["customer_id"]), []).append(_time(alert["event_time"]))

    churners = [cid for cid, churned in churns.items() if churned and cid in purchases]
    judged = [cid for cid in churners if last_event[cid] + horizon <= judged_until]
    leads = []
    for cid in judged:
        deadline, last_purchase = last_event[cid] + horizon, max(purchases[cid])
        in_time = [when for when in churn_alerts.get(cid, ()) if last_purchase <= when < deadline]
        if in_time:
            leads.append((deadline - min(in_time)).total_seconds() / 86_400)
    alerted = [cid for cid in churn_alerts if cid in churns]
    judged_alerts = followed_by_nothing = 0
    for cid, moments in churn_alerts.items():
        for when in moments:
            if when + horizon <= judged_until:
                judged_alerts += 1
                followed_by_nothing += not any(when < p <= when + horizon for p in purchases.get(cid, ()))
    return ChurnReport(
        churners=len(churners), judged=len(judged), warned_in_time=len(leads),
        alerted_customers=len(alerted), alerted_churners=sum(1 for cid in alerted if churns[cid]),
        judged_alerts=judged_alerts, alerts_followed_by_no_purchase=followed_by_nothing,
        median_lead_days=statistics.median(leads) if leads else None, alerts_by_kind=by_kind,
    )


def roc_auc(scores: Iterable[tuple[float, bool]]) -> float:
    """The exact ROC AUC (Mann-Whitney U, ties counting one half) of scores against labels.

    >>> roc_auc([(0.9, True), (0.8, False), (0.7, True), (0.1, False)])
    0.75
    >>> roc_auc([(0.5, True), (0.5, False)])
    0.5
    """
    ranked = sorted(scores, key=lambda pair: pair[0])
    positives = sum(1 for _, label in ranked if label)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        raise ValueError("the AUC needs both positive and negative examples")
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mean_rank * sum(1 for _, label in ranked[i:j] if label)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
