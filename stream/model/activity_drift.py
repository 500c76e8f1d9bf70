"""Population drift in what customers do, day by day of event time: conversion (purchases per
session), the funnel (checkouts per cart session, purchases per checkout), purchases per active
customer, basket value, refund rate, complaint rate, and the dead-letter rate of the records
received. Unlike the churn base rate, which rides on labels that resolve H days after
the behaviour, these move within days of an incident.

Each closed day gives each signal a standardised residual against its own baseline (an
exponentially weighted mean of the past days, and the day's sampling error from its count),
scaled by an overdispersion factor learnt from the same residuals (real days vary more than
counting alone explains). A two-sided CUSUM over those residuals raises a ``population_drift``
record when the cumulative excess passes ``threshold``: with the defaults a stationary
stream gives one false record per ~2,500 days per signal and direction, and a shift of three
standard errors a day is seen in about two days. Each record says what moved, by how much,
since which day (of the behaviour) and over how many sessions or purchases.

A rate that is normally zero (dead letters) is judged against a floor (``floors``) instead of its
baseline when that is lower: its days pool until the floor expects enough events, a stream that
never has any raises nothing, and a burst well above the floor is recorded.

A day is closed when every partition's events have gone more than the allowed lateness past
its end; a worker watches its own partitions, a sample of the whole (like the segment mix).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stream.core.activity import RATE_FLOORS, RATES, SIGNALS
from stream.model.params import Monitoring


@dataclass
class _Cusum:
    """One signal's baseline, overdispersion and two-sided CUSUM."""

    mean: float | None = None
    dispersion: float = 1.0
    days: int = 0
    up: float = 0.0
    down: float = 0.0
    up_since: int | None = None
    down_since: int | None = None
    quiet_until: int = -1
    recent: list[tuple[int, float, float]] = field(default_factory=list)  # (day, value, n) since the excess began
    block: list[tuple[float, float]] = field(default_factory=list)  # (value, n) of days pooled until enough events
    block_days: list[int] = field(default_factory=list)  # the days of those

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("block_days", [])  # pickled (in a trainer snapshot) before the days were kept
        self.__dict__.update(state)


@dataclass
class ActivityMonitor:
    """The signals' CUSUMs over closed days (see the module docstring). ``rates`` and
    ``signals`` name what is watched: the activity signals by default; the trainer watches the
    churn base rate of its labels with the same machinery."""

    lateness: timedelta = timedelta(days=3)
    slack: float = 0.5  # k: residuals below it do not accumulate
    threshold: float = 7.0  # h
    warmup_days: int = 14  # days of baseline before any record
    min_count: float = 20.0  # days are pooled until they hold this many sessions / purchases / checkouts
    min_expected: float = 10.0  # ... and this many expected events of a rate (rare ones pool several days)
    weight: float = 0.05  # of a new day in the baseline (about the last 20 days)
    cooldown_days: int = 14  # after a record, that signal stays quiet this long
    open_days: dict[int, dict[str, float]] = field(default_factory=dict)
    # signal: (numerator, denominator) counts
    rates: Mapping[str, tuple[str, str]] = field(default_factory=lambda: dict(RATES))
    signals: tuple[str, ...] = SIGNALS  # the rates', and basket_value (a mean of log amounts)
    floors: Mapping[str, float] = field(default_factory=lambda: dict(RATE_FLOORS))  # least baseline of a rate
    detectors: dict[str, _Cusum] = field(default_factory=dict)
    newest: dict[int, datetime] = field(default_factory=dict)  # per partition: a day closes when all passed it

    def __post_init__(self) -> None:
        for signal in self.signals:
            self.detectors.setdefault(signal, _Cusum())

    def __setstate__(self, state: dict[str, object]) -> None:
        state.setdefault("floors", dict(RATE_FLOORS))  # pickled (in a trainer snapshot) before floors
        self.__dict__.update(state)

    def observe(self, day: int, counts: Mapping[str, float]) -> None:
        """Add counts to an open day (days since 1970-01-01, UTC); a closed day is ignored."""
        if day <= self._closed_through():
            return
        bucket = self.open_days.setdefault(day, {})
        for name, value in counts.items():
            bucket[name] = bucket.get(name, 0.0) + value

    def advance(self, newest: datetime, partition: int = 0) -> list[Monitoring]:
        """A partition's event time has reached ``newest``: close the days that no partition
        can still add to (the watermark: the oldest partition's newest event, less the lateness)."""
        if partition not in self.newest or newest > self.newest[partition]:
            self.newest[partition] = newest
        last_closed = self._closed_through()
        records = []
        for day in sorted(d for d in self.open_days if d <= last_closed):
            records += self._close(day, self.open_days.pop(day))
        return records

    def _closed_through(self) -> int:
        if not self.newest:
            return -1
        return int((min(self.newest.values()) - self.lateness).timestamp() // 86_400) - 1

    def forget_partitions(self) -> None:
        """After a rebalance: the partitions held now report their own event times again."""
        self.newest.clear()

    def _close(self, day: int, counts: Mapping[str, float]) -> list[Monitoring]:
        records = []
        for signal in self.signals:
            measured = _measure(signal, counts, self.rates)
            if measured is None:
                continue
            cusum = self.detectors[signal]
            value, n, error = measured
            days = 1
            if error < 0:  # a rate: pool days until the count and the expected events suffice
                cusum.block = [*cusum.block[-59:], (value, n)]  # a rate that never occurs pools 60 days at most
                cusum.block_days = [*cusum.block_days[-59:], day]
                n = sum(count for _, count in cusum.block)
                value = _weighted_mean(cusum.block)
                expected = max(cusum.mean if cusum.mean is not None else value, self.floors.get(signal, 0.0)) * n
                if n < self.min_count or expected < self.min_expected:
                    continue
                # a floored rate's baseline is bounded by its floor: its warm-up counts the days
                # pooled; the others' counts judged values, the baseline of a rare rate being noisy
                days = len(cusum.block) if signal in self.floors else 1
                first = cusum.block_days[0] if len(cusum.block_days) == len(cusum.block) else day
                cusum.block, cusum.block_days = [], []
            elif n < self.min_count:
                continue
            else:
                first = day
            record = self._step(signal, cusum, first, day, value, n, error, days)
            if record is not None:
                records.append(record)
        return records

    def _step(self, signal: str, cusum: _Cusum, first: int, day: int, value: float, n: float, error: float,
              days: int = 1) -> Monitoring | None:
        """One judged value: a day's, or a rate's pooled over the days ``first`` to ``day`` (``days``:
        what it adds to the warm-up). An excess that begins with it began on ``first``."""
        if cusum.mean is None:
            cusum.mean, cusum.days = value, days
            return None
        if error < 0:  # a rate: the sampling error of the baseline rate over the day's count
            p = min(max(cusum.mean, self.floors.get(signal, 0.0), 0.5 / n), 1 - 0.5 / n)
            error = math.sqrt(p * (1 - p) / n)
        residual = (value - cusum.mean) / max(error, 1e-9)
        z = residual / math.sqrt(cusum.dispersion)
        cusum.days += days
        record = None
        if cusum.days > self.warmup_days and day > cusum.quiet_until:
            if cusum.up <= 0:
                cusum.up_since = first
            if cusum.down <= 0:
                cusum.down_since = first
            cusum.up = max(0.0, cusum.up + z - self.slack)
            cusum.down = max(0.0, cusum.down - z - self.slack)
            cusum.recent = [r for r in cusum.recent if r[0] >= min(cusum.up_since or first, cusum.down_since or first)]
            cusum.recent.append((first, value, n))
            for direction, level, since in (("up", cusum.up, cusum.up_since), ("down", cusum.down, cusum.down_since)):
                if level > self.threshold and since is not None:
                    record = self._record(signal, direction, cusum, since, day)
                    cusum.up = cusum.down = 0.0
                    cusum.quiet_until = day + self.cooldown_days
                    break
        if record is not None:  # a lasting change becomes the new normal after the cooldown
            cusum.mean = _weighted_mean([(v, n) for d, v, n in cusum.recent if d >= _since(record)])
        elif max(cusum.up, cusum.down) < self.threshold / 2:  # the baseline learns normal days, not an incident's
            cusum.mean += self.weight * (value - cusum.mean)
            cusum.dispersion += self.weight * (min(residual * residual, 9.0) - cusum.dispersion)
            cusum.dispersion = max(1.0, cusum.dispersion)
        return record

    def _record(self, signal: str, direction: str, cusum: _Cusum, since: int, day: int) -> Monitoring:
        window = [(v, n) for d, v, n in cusum.recent if d >= since]
        total = sum(n for _, n in window)
        recent = _weighted_mean(window)
        baseline = cusum.mean if cusum.mean is not None else float("nan")
        if signal == "basket_value":  # reported as amounts (geometric means), not logs
            baseline, recent = math.exp(baseline), math.exp(recent)
        return Monitoring("population_drift", _day_start(day + 1), {
            "signal": signal, "direction": direction, "baseline": round(baseline, 4), "recent": round(recent, 4),
            "change": round(recent / baseline - 1, 4) if baseline else None,
            "since": _day_start(since).date().isoformat(), "days": day - since + 1,
            "over": round(total), "over_what": self.rates[signal][1] if signal in self.rates else "purchases"})


def _measure(signal: str, counts: Mapping[str, float], rates: Mapping[str, tuple[str, str]]
             ) -> tuple[float, float, float] | None:
    """(the day's value, its count, its standard error or -1 for a rate) or None without a denominator."""
    if signal == "basket_value":
        n = counts.get("baskets", 0.0)
        if n < 2:
            return None
        mean = counts.get("log_basket", 0.0) / n
        variance = max(0.0, counts.get("log_basket_sq", 0.0) / n - mean * mean) * n / (n - 1)
        return mean, n, math.sqrt(variance / n)
    numerator, denominator = rates[signal]
    n = counts.get(denominator, 0.0)
    if n <= 0:
        return None
    return counts.get(numerator, 0.0) / n, n, -1.0  # its error follows from the baseline rate


def _weighted_mean(values: list[tuple[float, float]]) -> float:
    total = sum(n for _, n in values)
    return sum(v * n for v, n in values) / total if total else float("nan")


def _since(record: Monitoring) -> int:
    return int(datetime.fromisoformat(str(record.details["since"])).replace(tzinfo=UTC).timestamp() // 86_400)


def _day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * 86_400, UTC)
