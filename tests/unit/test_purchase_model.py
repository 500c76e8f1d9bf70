"""The purchase model against ``lifetimes`` (the reference implementation of BG/NBD and
Gamma-Gamma) on the real CDNOW log, and its invariants on any summary."""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.fold import purchase_fields
from stream.core.purchase import BgNbd, FitError, GammaGamma, fit_bgnbd, fit_gamma_gamma
from stream.core.purchase_outlook import PurchaseModel, fit_population
from stream.core.rfm import MONETARY_RESOLUTION, Population, RawRfmValues
from stream.sinks.base import ReadModels, as_of_now

CUTOFF = date(1997, 9, 30)


def _cdnow_summaries() -> tuple[np.ndarray, ...]:
    spec = importlib.util.find_spec("lifetimes")
    assert spec is not None and spec.origin
    path = Path(spec.origin).parent / "datasets" / "CDNOW_master.txt"
    days: dict[str, set[int]] = defaultdict(set)
    spend: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text().splitlines()[1:]:
        customer, day, _, amount = line.split()
        when = date(int(day[:4]), int(day[4:6]), int(day[6:]))
        if when <= CUTOFF:
            days[customer].add((CUTOFF - when).days)
            spend[customer].append(float(amount))
    ages = [sorted(v) for v in days.values()]  # days before the cut-off, newest first
    x = np.array([len(a) - 1 for a in ages], dtype=float)
    T = np.array([a[-1] for a in ages], dtype=float)
    t_x = T - np.array([a[0] for a in ages], dtype=float)
    orders = np.array([len(v) for v in spend.values()], dtype=float)
    mean = np.array([sum(v) / len(v) for v in spend.values()])
    return x, t_x, T, orders, mean


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, ...]:
    return _cdnow_summaries()


def test_bgnbd_fit_and_predictions_equal_lifetimes_on_cdnow(cdnow: tuple[np.ndarray, ...]) -> None:
    from lifetimes import BetaGeoFitter

    x, t_x, T, _, _ = cdnow
    ours = fit_bgnbd(x, t_x, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = BetaGeoFitter().fit(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(reference.params_[name], rel=1e-3), name
    # the same fit from a histogram of distinct summaries, weighted by customers
    keys, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    weighted = fit_bgnbd(keys[:, 0], keys[:, 1], keys[:, 2], counts)
    assert weighted.alpha == pytest.approx(ours.alpha, rel=1e-3) and weighted.b == pytest.approx(ours.b, rel=1e-3)
    for i in range(0, len(x), 997):
        assert ours.p_alive(x[i], t_x[i], T[i]) == pytest.approx(
            np.asarray(reference.conditional_probability_alive(x[i], t_x[i], T[i])).item(), rel=1e-3, abs=1e-6)
        assert ours.expected_purchases(90, x[i], t_x[i], T[i]) == pytest.approx(
            np.asarray(reference.conditional_expected_number_of_purchases_up_to_time(90, x[i], t_x[i], T[i])).item(),
            rel=1e-3, abs=1e-6)


def test_gamma_gamma_fit_equals_lifetimes_on_cdnow_repeat_buyers(cdnow: tuple[np.ndarray, ...]) -> None:
    from lifetimes import GammaGammaFitter

    _, _, _, orders, mean = cdnow
    repeat = orders > 1
    ours = fit_gamma_gamma(orders[repeat], mean[repeat])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = GammaGammaFitter().fit(orders[repeat], mean[repeat])
    for name in ("p", "q", "v"):
        assert getattr(ours, name) == pytest.approx(reference.params_[name], rel=2e-3), name
    for i in range(0, int(repeat.sum()), 501):
        n, m = orders[repeat][i], mean[repeat][i]
        assert ours.expected_spend(int(n), m) == pytest.approx(
            np.asarray(reference.conditional_expected_average_profit(n, m)).item(), rel=1e-3)


def test_fits_refuse_populations_they_cannot_identify() -> None:
    with pytest.raises(FitError, match="at least 20 customers"):
        fit_bgnbd(np.zeros(5), np.zeros(5), np.full(5, 10.0))
    with pytest.raises(FitError, match="repeat buyer"):
        fit_bgnbd(np.zeros(50), np.zeros(50), np.full(50, 10.0))
    with pytest.raises(FitError, match="spend model"):
        fit_gamma_gamma(np.ones(3), np.ones(3))


def _same_rate_population(seed: int, rate: float, dropout: float, customers: int = 2000, days: float = 60.0
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers who all buy at ``rate`` per day (no spread between them), each leaving after a
    purchase with probability ``dropout``; first purchases over the first half of ``days``."""
    rng = np.random.default_rng(seed)
    x, t_x, T = np.zeros(customers), np.zeros(customers), np.zeros(customers)
    for i in range(customers):
        first = rng.uniform(0, days / 2)
        at = last = first
        while (at := at + rng.exponential(1 / rate)) <= days:
            x[i], last = x[i] + 1, at
            if rng.random() < dropout:
                break
        t_x[i], T[i] = last - first, days - first
    return x, t_x, T


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("rate", "days"), [(0.1, 60.0), (0.003, 2000.0)])
def test_a_population_buying_at_one_rate_is_fitted_at_the_poisson_limit(seed: int, rate: float, days: float) -> None:
    # r -> inf with r/alpha the rate: refused before on half of these (alpha ran into its bound)
    x, t_x, T = _same_rate_population(seed, rate, dropout=0.05, days=days)
    model = fit_bgnbd(x, t_x, T)
    assert model.r > 50  # the rates' spread (1 / sqrt(r) of their mean) is small
    assert model.r / model.alpha == pytest.approx(rate, rel=0.15)
    # the expected purchases of a customer who has bought once stay near the rate
    assert model.expected_purchases(30, 0, 0, 10) == pytest.approx(30 * rate, rel=0.15)


MODEL = BgNbd(r=0.25, alpha=33.5, a=0.72, b=2.16)
summaries = st.tuples(st.integers(0, 60), st.floats(0, 500), st.floats(0, 500), st.floats(0.5, 400)).map(
    lambda v: (float(v[0]), min(v[1], v[2]) if v[0] else 0.0, max(v[1], v[2]), v[3]))


@given(summaries)
def test_probabilities_stay_probabilities_and_silence_only_raises_churn(summary: tuple[float, ...]) -> None:
    x, t_x, T, horizon = summary
    alive, quiet = MODEL.p_alive(x, t_x, T), MODEL.p_no_purchase(horizon, x, t_x, T)
    assert 0.0 <= alive <= 1.0 and 0.0 <= quiet <= 1.0
    assert MODEL.p_no_purchase(horizon, x, t_x, T + 30) >= quiet - 1e-12  # 30 more silent days
    assert MODEL.p_alive(x, t_x, T + 30) <= alive + 1e-12
    assert MODEL.p_no_purchase(horizon * 2, x, t_x, T) <= quiet + 1e-12  # a longer horizon, more chances to buy
    expected = MODEL.expected_purchases(horizon, x, t_x, T)
    assert math.isfinite(expected) and expected >= 0.0


# a near 1 divides by a - 1 (the closed form's pole): rounding differences of one ulp between
# numpy's and math's logarithms grow by 1 / (a - 1) there, and both forms are only finite there
models = st.builds(BgNbd, r=st.floats(0.05, 20), alpha=st.floats(0.5, 500),
                   a=st.floats(0.05, 1000).filter(lambda a: abs(a - 1) > 0.01), b=st.floats(0.05, 5000))


def _both(model: BgNbd, rows: list[tuple[float, ...]]) -> tuple[np.ndarray, np.ndarray]:
    x, t_x, T, _ = (np.array(column) for column in zip(*rows, strict=True))
    return model.expected_purchases_of(90, x, t_x, T), np.array([model.expected_purchases(90, *row[:3])
                                                                 for row in rows])


@given(models, st.lists(summaries, min_size=1, max_size=20))
def test_expected_purchases_of_many_summaries_equal_one_by_one(model: BgNbd, rows: list[tuple[float, ...]]) -> None:
    # (the fit's population mean value uses the vectorised form)
    many, one_by_one = _both(model, rows)
    assert np.allclose(many, one_by_one, rtol=1e-9, atol=1e-12, equal_nan=True)


@given(st.floats(0.05, 20), st.floats(0.5, 500), st.floats(0.05, 5000), st.lists(summaries, min_size=1, max_size=20))
def test_expected_purchases_at_the_pole_a_1_stay_finite_and_non_negative(r: float, alpha: float, b: float,
                                                                         rows: list[tuple[float, ...]]) -> None:
    for expected in _both(BgNbd(r=r, alpha=alpha, a=1.0, b=b), rows):
        assert np.all(np.isfinite(expected)) and np.all(expected >= 0)


@given(st.integers(1, 50), st.floats(1, 1000))
def test_expected_spend_lies_between_the_customer_and_the_population(orders: int, mean: float) -> None:
    model = GammaGamma(p=6.25, q=3.74, v=15.44)
    spend, population = model.expected_spend(orders, mean), model.population_mean()
    assert min(mean, population) - 1e-9 <= spend <= max(mean, population) + 1e-9


def test_the_population_histograms_fit_the_same_model_as_every_customer(cdnow: tuple[np.ndarray, ...]) -> None:
    x, t_x, T, orders, mean = cdnow
    now_day, population = 10_000, Population()
    for i in range(len(x)):
        first = now_day - int(T[i])
        population.add(RawRfmValues(last_purchase_day=first + int(t_x[i]), orders=int(x[i]) + 1,
                                    monetary_cents=int(round(mean[i] * 100)) * (int(x[i]) + 1),
                                    first_purchase_day=first))
    # shares travel as JSON between workers and merge by adding counts
    halves = [Population.from_json(population.to_json()), Population()]
    merged = Population.merge(halves)
    model = fit_population(merged.purchases, merged.spend, MONETARY_RESOLUTION)
    direct = fit_bgnbd(x, t_x, T)
    assert model.as_of_day == now_day and model.customers == len(x) and model.repeat_buyers == int((x > 0).sum())
    assert model.bgnbd.alpha == pytest.approx(direct.alpha, rel=1e-3)
    assert model.bgnbd.r == pytest.approx(direct.r, rel=1e-3)
    assert model.spend is not None and 5 < model.spend.population_mean() < 100  # dollars per order
    # the population's mean predicted value: the mean customer's expected orders x the mean order
    expected = [model.bgnbd.expected_purchases(90, x[i], t_x[i], T[i]) for i in range(len(x))]
    assert model.mean_value == pytest.approx(sum(expected) / len(expected) * model.spend.population_mean(), rel=1e-6)
    assert PurchaseModel.from_json(model.to_json()) == model
    # a share published before the purchase model still loads
    legacy = {k: v for k, v in population.to_json().items() if k not in ("purchases", "spend")}
    assert Population.from_json(legacy).purchases == {}


def test_a_silent_customers_hash_is_read_as_of_the_models_now() -> None:
    model = PurchaseModel(BgNbd(0.25, 33.5, 0.72, 2.16), GammaGamma(6.25, 3.74, 15.44), as_of_day=20_100,
                          customers=1000, repeat_buyers=300)
    first, last = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)  # day 19,783 .. 19,843
    written = {"orders": "4", "monetary": "80.00", "first_purchase_at": first.isoformat(),
               "last_purchase_at": last.isoformat(), "as_of_event_time": last.isoformat()}
    stale = purchase_fields(4, 4, first, last, 80.0, last, None, 90)
    assert stale == {}  # no model: nothing claimed
    at_write = purchase_fields(4, 4, first, last, 80.0, last, replace(model, as_of_day=19_850), 90)  # a week on
    now = as_of_now(written, ReadModels(model))
    assert now["scores_as_of"] == datetime(2025, 1, 12, tzinfo=UTC).isoformat()  # day 20,100 (2025-01-01 is day 20,089)
    assert float(now["purchase_churn_probability"]) > at_write["purchase_churn_probability"]
    assert float(now["p_alive"]) < at_write["p_alive"]
    assert float(now["predicted_value"]) < at_write["predicted_value"]
    assert as_of_now({"orders": "0"}, ReadModels(model)) == {"orders": "0"}


def test_purchase_days_count_a_day_once_and_a_state_from_before_counts_its_orders() -> None:
    from schemas import CustomerState, parse_event
    from stream.core.fold import apply_event

    def purchase(event_id: str, at: str) -> object:
        return parse_event(f'{{"type":"purchase","event_id":"{event_id}","customer_id":"c","event_time":"{at}",'
                           f'"order_id":"{event_id}","total":"10.00"}}')

    state = CustomerState(customer_id="c")
    for event_id, at in (("a", "2024-03-01T09:00:00Z"), ("b", "2024-03-01T18:00:00Z"), ("c", "2024-03-04T10:00:00Z"),
                         ("d", "2024-03-02T10:00:00Z"), ("e", "2024-03-01T23:00:00Z")):  # the last two late
        state, _ = apply_event(state, purchase(event_id, at))  # type: ignore[arg-type]
    assert (state.orders, state.purchase_days) == (5, 3)  # 1, 2 and 4 March
    legacy = CustomerState(customer_id="c", orders=4, last_purchase_at=datetime(2024, 2, 1, tzinfo=UTC),
                           first_purchase_at=datetime(2024, 1, 1, tzinfo=UTC),
                           last_event_at=datetime(2024, 2, 1, tzinfo=UTC))
    upgraded, _ = apply_event(legacy, purchase("f", "2024-03-01T09:00:00Z"))  # type: ignore[arg-type]
    assert (upgraded.orders, upgraded.purchase_days) == (5, 5)
