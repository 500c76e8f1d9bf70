"""Cross-sell affinity: "a purchase of A is followed by a purchase of B within W days",
incrementally.

Counted over purchases, as sequential association rules are: for each category A (and ``*``,
any purchase), how many purchases contained A, and how many of those were followed by another
purchase of the same customer containing B at most ``WINDOW`` later (the same second counts
both ways; the same purchase does not count). Each purchase changes those counts by what it
adds (:func:`fold_purchase`): its own categories, the earlier baskets it is the first to
follow with a category, and the categories of the later baskets that follow it. For that a
customer's state keeps their baskets of the last ``WINDOW`` + lateness, so a late purchase
still finds every purchase it follows or is followed by: the counts are exact in any arrival
order within the allowed lateness (for a customer with at most ``MAX_BASKETS`` purchases in
that span). The counts themselves are population figures, not kept per customer: each
partition sums them in the ``profile-counters`` table (``affinity.orders:A@p``,
``affinity.follows:A>B@p``), and the workers merge them like the RFM histograms:

    confidence(A → B) = followed(A, B) / purchases(A)
    lift(A → B)       = confidence(A → B) / (followed(*, B) / purchases(*))
    support(A → B)    = followed(A, B) / purchases(*)

so a lift of 3 means a purchase of A is followed by B within the window three times as often
as a purchase in general. A customer's next best categories are those they have not bought,
ranked by the highest lift among the rules from the categories they have bought.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas import CustomerState, Purchase

WINDOW = timedelta(days=30)
ANY = "*"
MAX_CATEGORIES = 8  # remembered per customer as bought (the first ones), for their suggestions
MAX_BASKETS = 8  # kept per customer: beyond 8 purchases in 30 days + lateness, the oldest are dropped
MIN_PAIR_PURCHASES = 5  # a rule needs this many purchases of A followed by B
TOP_SUGGESTIONS = 3
PAIR_SEPARATOR = ">"
PUBLISHED_RULES = 200  # the strongest rules in ``pulse:affinity``
ORDERS_COUNTER = "affinity.orders:"
FOLLOWS_COUNTER = "affinity.follows:"

Basket = tuple[int, tuple[str, ...]]  # (epoch seconds, its categories)


@dataclass(frozen=True)
class Rule:
    antecedent: str
    consequent: str
    purchases: int  # purchases of A followed by B
    support: float
    confidence: float
    lift: float

    def to_json(self) -> dict[str, object]:
        return {"if": self.antecedent, "then": self.consequent, "purchases": self.purchases,
                "support": round(self.support, 4), "confidence": round(self.confidence, 4),
                "lift": round(self.lift, 4)}


def fold_purchase(recent: Sequence[Basket], categories: Iterable[str], at: datetime, newest: datetime,
                  lateness: timedelta) -> tuple[list[Basket], dict[str, int], dict[tuple[str, str], int]]:
    """A purchase of ``categories`` at ``at``: the customer's recent baskets after it, and what
    it adds to the purchase counts (``*`` and each category) and to the follow counts (A, B).
    Which categories followed a kept basket is not stored: the baskets that follow it are kept
    too (they are later), so it is read from them.

    >>> from datetime import UTC
    >>> t0, lag = datetime(2024, 1, 1, tzinfo=UTC), timedelta(days=3)
    >>> baskets, orders, follows = fold_purchase([], ["books"], t0, t0, lag)
    >>> later = t0 + timedelta(days=10)
    >>> fold_purchase(baskets, ["music"], later, later, lag)[1:]
    ({'*': 1, 'music': 1}, {('*', 'music'): 1, ('books', 'music'): 1})
    """
    moment = int(at.timestamp())
    window = int(WINDOW.total_seconds())
    keep_from = int((newest - lateness - WINDOW).timestamp())
    basket = tuple(sorted({c for c in categories if c}))
    kept = [(when, cats) for when, cats in recent if when >= keep_from]
    orders = {ANY: 1, **{category: 1 for category in basket}}
    follows: dict[tuple[str, str], int] = {}

    def follow(antecedents: Iterable[str], consequent: str) -> None:
        for antecedent in (ANY, *antecedents):
            follows[(antecedent, consequent)] = follows.get((antecedent, consequent), 0) + 1

    followed_by: set[str] = set()
    for index, (when, cats) in enumerate(kept):
        if when <= moment <= when + window:  # this purchase follows that one
            before = {c for other, (t, others) in enumerate(kept) if other != index and when <= t <= when + window
                      for c in others}
            for consequent in basket:
                if consequent not in before:
                    follow(cats, consequent)
        if moment <= when <= moment + window:  # that one follows this one
            followed_by.update(cats)
    for consequent in sorted(followed_by):
        follow(basket, consequent)
    if moment >= keep_from:
        kept.append((moment, basket))
    return sorted(kept)[-MAX_BASKETS:], orders, follows


def cross_sell(state: CustomerState, purchase: Purchase, lateness: timedelta
               ) -> tuple[CustomerState, dict[str, int], dict[tuple[str, str], int]]:
    """An admitted purchase folded into a customer's state (``state`` already holds it as its
    newest event time): the state with its baskets and categories, and the counts it adds."""
    categories = [item.category for item in purchase.items if item.category]
    baskets, orders, follows = fold_purchase(state.recent_baskets, categories, purchase.event_time,
                                             state.last_event_at or purchase.event_time, lateness)
    return state.model_copy(update={"recent_baskets": baskets,
                                    "categories_bought": with_bought(state.categories_bought, categories)}
                            ), orders, follows


def with_bought(bought: Sequence[str], categories: Iterable[str]) -> list[str]:
    """The categories a customer bought, sorted; at most ``MAX_CATEGORIES`` (the first ones).

    >>> with_bought(["toys"], ["books", "toys"])
    ['books', 'toys']
    """
    have = list(bought)
    for category in sorted({c for c in categories if c} - set(have)):
        if len(have) < MAX_CATEGORIES:
            have.append(category)
    return sorted(have)


def counter_names(orders: Mapping[str, int], follows: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """The ``profile-counters`` names of a purchase's counts.

    >>> counter_names({"*": 1}, {("*", "b"): 1})
    {'affinity.orders:*': 1, 'affinity.follows:*>b': 1}
    """
    names = {f"{ORDERS_COUNTER}{category}": n for category, n in orders.items()}
    names.update({f"{FOLLOWS_COUNTER}{a}{PAIR_SEPARATOR}{b}": n for (a, b), n in follows.items()})
    return names


def from_counter(name: str) -> tuple[str, str | tuple[str, str]] | None:
    """Which count a ``profile-counters`` name is (None: not an affinity count).

    >>> from_counter("affinity.follows:books>music"), from_counter("affinity.orders:*"), from_counter("x")
    (('follows', ('books', 'music')), ('orders', '*'), None)
    """
    if name.startswith(ORDERS_COUNTER):
        return "orders", name.removeprefix(ORDERS_COUNTER)
    if name.startswith(FOLLOWS_COUNTER):
        antecedent, _, consequent = name.removeprefix(FOLLOWS_COUNTER).partition(PAIR_SEPARATOR)
        return "follows", (antecedent, consequent)
    return None


def rules(orders: Mapping[str, int], follows: Mapping[tuple[str, str], int],
          min_purchases: int = MIN_PAIR_PURCHASES) -> list[Rule]:
    """Every rule A → B (A, B categories) with at least ``min_purchases`` purchases of A
    followed by B, by lift (highest first).

    >>> found = rules({"*": 100, "a": 20, "b": 10}, {("*", "b"): 10, ("a", "b"): 8, ("b", "a"): 2})
    >>> [r.to_json() for r in found]
    [{'if': 'a', 'then': 'b', 'purchases': 8, 'support': 0.08, 'confidence': 0.4, 'lift': 4.0}]
    """
    total = orders.get(ANY, 0)
    found = []
    for (antecedent, consequent), together in follows.items():
        if antecedent in (ANY, consequent) or together < min_purchases:
            continue
        base, overall = orders.get(antecedent, 0), follows.get((ANY, consequent), 0)
        if not base or not overall or not total:
            continue
        confidence = together / base
        found.append(Rule(antecedent, consequent, together, together / total, confidence,
                          confidence / (overall / total)))
    return sorted(found, key=lambda r: (-r.lift, r.antecedent, r.consequent))


def next_best(bought: Iterable[str], known: Iterable[Rule], top: int = TOP_SUGGESTIONS) -> list[Rule]:
    """The categories a customer has not bought, each by its best rule (lift above 1) from a
    category they have, highest lift first.

    >>> found = rules({"*": 100, "a": 20}, {("*", "b"): 10, ("*", "c"): 10, ("a", "b"): 8, ("a", "c"): 5})
    >>> [(r.consequent, r.lift) for r in next_best(["a"], found)]
    [('b', 4.0), ('c', 2.5)]
    >>> next_best(["a", "b", "c"], found)
    []
    """
    have = set(bought)
    best: dict[str, Rule] = {}
    for rule in known:
        if rule.antecedent in have and rule.consequent not in have and rule.lift > 1.0 \
                and rule.consequent not in best:
            best[rule.consequent] = rule  # ``known`` is ordered by lift
    return sorted(best.values(), key=lambda r: (-r.lift, r.consequent))[:top]


def suggestion_text(suggestions: Iterable[Rule]) -> str:
    """The hash's ``next_best_categories``: ``category:lift`` by lift, comma-separated; empty when
    the rules suggest nothing, so a write replaces suggestions that no longer hold (a category
    since bought) instead of leaving them in the hash.

    >>> suggestion_text(rules({"*": 100, "a": 20}, {("*", "b"): 10, ("a", "b"): 8})), suggestion_text([])
    ('b:4.00', '')
    """
    return ",".join(f"{r.consequent}:{r.lift:.2f}" for r in suggestions)


def affinity_document(purchases: int, found: Iterable[Rule]) -> dict[str, object]:
    """What ``pulse:affinity`` holds: the purchases counted, the window, the strongest rules.

    >>> affinity_document(100, rules({"*": 100, "a": 20}, {("*", "b"): 10, ("a", "b"): 8}))["rules"][0]["lift"]
    4.0
    """
    return {"purchases": purchases, "window_days": WINDOW.days, "min_purchases": MIN_PAIR_PURCHASES,
            "rules": [rule.to_json() for rule in list(found)[:PUBLISHED_RULES]]}
