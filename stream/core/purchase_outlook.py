"""A fitted purchase model as every worker and reader uses it: per-customer outlooks (alive,
churn over the horizon, expected orders, predicted value, potential) as of the model's now,
and the fit over the population's histograms (the models themselves: ``stream/core/purchase.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.core.purchase import MODEL_PREFIX, BgNbd, FitError, GammaGamma, fit_bgnbd, fit_gamma_gamma


@dataclass(frozen=True)
class Outlook:
    """One customer's outlook over the horizon, as of ``as_of_day``."""

    p_alive: float
    p_no_purchase: float  # within the horizon: the purchase model's churn probability
    expected_orders: float  # within the horizon
    expected_order_value: float | None
    predicted_value: float | None  # expected_orders x expected_order_value


@dataclass(frozen=True)
class PurchaseModel:
    """The fitted population: what every worker and reader computes outlooks with. ``as_of_day``
    (days since 1970-01-01) is the newest purchase day of the population fitted: the model's now."""

    bgnbd: BgNbd
    spend: GammaGamma | None
    as_of_day: int
    customers: int
    repeat_buyers: int
    horizon_days: float = 90.0
    mean_value: float | None = None  # the population's mean predicted value within horizon_days

    def potential(self, predicted_value: float | None, value_tier: str | None) -> str | None:
        """``high``: low value today (bronze or silver) and a predicted value of at least twice
        the population's mean; ``medium``: at least the mean; else ``low``. The customers
        marketing can grow, not only rescue.

        >>> model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), None, 1000, 500, 90, mean_value=40.0)
        >>> model.potential(95.0, "silver"), model.potential(95.0, "diamond"), model.potential(10.0, "bronze")
        ('high', 'medium', 'low')
        """
        if predicted_value is None or not self.mean_value:
            return None
        if predicted_value >= 2 * self.mean_value and value_tier in ("bronze", "silver"):
            return "high"
        return "medium" if predicted_value >= self.mean_value else "low"

    @property
    def version(self) -> str:
        """
        >>> PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), None, 10_000, 500, 90).version
        'bgnbd-10000-500'
        """
        return f"{MODEL_PREFIX}-{self.as_of_day}-{self.customers}"

    def outlook(self, orders: int, purchase_days: int, first_day: float, last_day: float, monetary: float,
                now_day: float, horizon_days: float) -> Outlook:
        """From a customer's orders, distinct purchase days, first and last purchase day
        (fractional days allowed) and total spend, at ``now_day`` (never before the model's own
        now or the last purchase). Repeat purchases are counted in days, as BG/NBD is fitted.

        >>> model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), 1000, 500, 90)
        >>> soon, later = (model.outlook(3, 3, 900, 990, 60.0, day, 90) for day in (1000, 1060))
        >>> soon.p_no_purchase < later.p_no_purchase and soon.p_alive > later.p_alive
        True
        """
        now = max(now_day, self.as_of_day, last_day)
        x, t_x, age = max(0, purchase_days - 1), max(0.0, last_day - first_day), max(0.0, now - first_day)
        expected = self.bgnbd.expected_purchases(horizon_days, x, t_x, age)
        order_value = self.spend.expected_spend(orders, monetary / orders) \
            if self.spend is not None and orders > 0 and monetary > 0 else None
        return Outlook(p_alive=self.bgnbd.p_alive(x, t_x, age),
                       p_no_purchase=self.bgnbd.p_no_purchase(horizon_days, x, t_x, age),
                       expected_orders=expected, expected_order_value=order_value,
                       predicted_value=expected * order_value if order_value is not None else None)

    def to_json(self) -> dict[str, object]:
        return {"bgnbd": self.bgnbd.to_json(), "spend": self.spend.to_json() if self.spend else None,
                "as_of_day": self.as_of_day, "customers": self.customers, "repeat_buyers": self.repeat_buyers,
                "horizon_days": self.horizon_days, "mean_value": self.mean_value, "version": self.version}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PurchaseModel:
        return cls(bgnbd=BgNbd.from_json(data["bgnbd"]),
                   spend=GammaGamma.from_json(data["spend"]) if data.get("spend") else None,
                   as_of_day=int(data["as_of_day"]), customers=int(data["customers"]),
                   repeat_buyers=int(data["repeat_buyers"]), horizon_days=float(data.get("horizon_days", 90)),
                   mean_value=float(data["mean_value"]) if data.get("mean_value") is not None else None)


def bucket_value(bucket: int, resolution: float) -> float:
    """The representative amount (cents) of a monetary bucket: its geometric middle."""
    return 0.0 if bucket <= 0 else resolution ** (bucket - 0.5)


def fit_population(purchases: Mapping[tuple[int, ...], int], spend: Mapping[tuple[int, ...], int],
                   resolution: float, horizon_days: float = 90.0) -> PurchaseModel:
    """Fit both models over the population's histograms: ``purchases`` counts customers by
    (purchase days, first purchase day, last purchase day), ``spend`` by (orders, monetary bucket of
    their mean order, ``resolution`` wide). Raises ``FitError`` if it cannot be fitted."""
    if not purchases:
        raise FitError("the purchase model needs at least 20 customers and a repeat buyer (have 0 customers)")
    now = max(last for _, _, last in purchases)
    rows = np.array([(days - 1, last - first, now - first, count)
                     for (days, first, last), count in purchases.items()], dtype=float)
    x, t_x, age, weights = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    bgnbd = fit_bgnbd(x, t_x, age, weights)
    gamma_gamma = None
    repeat = [(orders, bucket_value(bucket, resolution) / 100, count)
              for (orders, bucket), count in spend.items() if orders > 1 and bucket > 0]
    if repeat:
        data = np.array(repeat, dtype=float)
        try:
            gamma_gamma = fit_gamma_gamma(data[:, 0], data[:, 1], data[:, 2])
        except FitError:
            gamma_gamma = None  # too few repeat buyers with a positive spend: no value prediction yet
    mean_value = None
    if gamma_gamma is not None:  # expected orders of the mean customer x the population's mean order
        expected = bgnbd.expected_purchases_of(horizon_days, x, t_x, age)
        mean_value = float(np.average(expected, weights=weights)) * gamma_gamma.population_mean()
    return PurchaseModel(bgnbd=bgnbd, spend=gamma_gamma, as_of_day=int(now), customers=int(weights.sum()),
                         repeat_buyers=int(weights[x > 0].sum()), horizon_days=horizon_days, mean_value=mean_value)
