"""Cross-sell counts: what the purchases add up to, streamed out of order (within the allowed
lateness) and with duplicates, equals the batch computation over the same events; and the
rules and suggestions read from them."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.affinity import ANY, MAX_BASKETS, MAX_CATEGORIES, WINDOW, fold_purchase, next_best, rules, with_bought
from stream.core.batch import batch_affinity
from stream.io.generate import CrossSell, PopulationSpec, generate, plant_cross_sell
from tests.unit.test_profile_property import LATENESS_SECONDS, POLICY, event_lists


def _stream(delivered: list[dict]) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[str, list[str]]]:
    """What the processor does with admitted purchases: fold each into its customer's baskets
    and add what it adds to the counts."""
    seen: set[str] = set()
    newest: dict[str, datetime] = {}
    baskets: dict[str, list] = {}
    bought: dict[str, list[str]] = {}
    orders: dict[str, int] = {}
    follows: dict[tuple[str, str], int] = {}
    for event in delivered:
        if event["event_id"] in seen:
            continue  # a duplicate: the fold never sees it
        seen.add(event["event_id"])
        cid, at = event["customer_id"], datetime.fromisoformat(event["event_time"])
        newest[cid] = max(newest.get(cid, at), at)
        if event["type"] != "purchase":
            continue
        categories = [item["category"] for item in event["items"]]
        baskets[cid], added, followed = fold_purchase(baskets.get(cid, []), categories, at, newest[cid],
                                                      POLICY.lateness)
        bought[cid] = with_bought(bought.get(cid, []), categories)
        for key, n in added.items():
            orders[key] = orders.get(key, 0) + n
        for pair, n in followed.items():
            follows[pair] = follows.get(pair, 0) + n
    return orders, follows, bought


@settings(max_examples=200, deadline=None)
@given(events=event_lists(), data=st.data())
def test_streamed_counts_equal_the_batch_counts_out_of_order_with_duplicates(events: list[dict],
                                                                             data: st.DataObject) -> None:
    # exact for customers with at most MAX_BASKETS purchases within the window and the lateness
    purchases: dict[str, int] = {}
    kept = []
    for event in events:
        if event["type"] == "purchase":
            purchases[event["customer_id"]] = purchases.get(event["customer_id"], 0) + 1
            if purchases[event["customer_id"]] > MAX_BASKETS:
                continue
        kept.append(event)
    events = kept
    copies = events + data.draw(st.lists(st.sampled_from(events), max_size=20))
    delays = data.draw(st.lists(st.integers(0, LATENESS_SECONDS - 1), min_size=len(copies), max_size=len(copies)))
    delivered = [e for _, _, e in sorted(
        ((datetime.fromisoformat(e["event_time"]).timestamp() + d, i, e)
         for i, (e, d) in enumerate(zip(copies, delays, strict=True))), key=lambda item: (item[0], item[1]))]
    orders, follows, bought = _stream(delivered)
    expected = batch_affinity(events, int(WINDOW.total_seconds()))
    assert orders == expected.orders
    assert follows == expected.follows
    for customer_id, (own_orders, _) in expected.by_customer.items():
        assert bought.get(customer_id, []) == sorted(c for c in own_orders if c != ANY)[:MAX_CATEGORIES]


def test_a_planted_rule_is_the_strongest_and_has_the_lift_of_the_batch_computation() -> None:
    events, _ = generate(PopulationSpec(customers=400, days=365, seed=5))
    mixed, planted = plant_cross_sell(events, CrossSell("books", "music", 0.5), seed=5)
    orders, follows, bought = _stream(mixed)
    found = rules(orders, follows)
    expected = batch_affinity(mixed, int(WINDOW.total_seconds()))
    exact = {(r.antecedent, r.consequent): r.lift for r in rules(expected.orders, expected.follows)}
    top = found[0]
    # heavy buyers keep only their last MAX_BASKETS baskets: every lift within 10% of the batch's
    worst = max(abs(r.lift - exact[(r.antecedent, r.consequent)]) / exact[(r.antecedent, r.consequent)]
                for r in found if (r.antecedent, r.consequent) in exact)
    print(f"\n{len(planted)} planted; books -> music lift {top.lift:.3f} (batch {exact[('books', 'music')]:.3f}), "
          f"confidence {top.confidence:.3f} over {orders[ANY]} purchases; largest lift deviation {worst:.1%}; "
          f"next: {[(r.antecedent, r.consequent, round(r.lift, 2)) for r in found[1:4]]}")
    assert worst <= 0.1 and set(exact) >= {(r.antecedent, r.consequent) for r in found if r.purchases >= 20}
    assert (top.antecedent, top.consequent) == ("books", "music") and top.lift >= 3
    # a books buyer who never bought music is offered music first
    readers = [cid for cid, have in bought.items() if "books" in have and "music" not in have]
    assert readers and all(next_best(bought[cid], found)[0].consequent == "music" for cid in readers)


def test_a_worker_rebuilds_its_partitions_cross_sell_counts_from_the_counters_table() -> None:
    from stream.core.population import PopulationBook

    counters = {"affinity.orders:*@0": b"5", "affinity.orders:books@0": b"2", "affinity.follows:books>music@0": b"2",
                "affinity.orders:*@1": b"3", "affinity.follows:*>music@1": b"1", "profile.applied@0": b"5"}
    book = PopulationBook(2, states={}, index={}, counters=counters)
    book.index(0)  # built on first use after an assignment (both partitions, as this worker holds both)
    merged = book.merged()
    assert merged.category_orders == {"*": 8, "books": 2}
    assert merged.follows == {("books", "music"): 2, ("*", "music"): 1}
    book.add_affinity(1, {"*": 1, "music": 1}, {("books", "music"): 1})
    assert book.merged().follows[("books", "music")] == 3 and 1 in book.dirty


def test_suggestions_that_no_longer_hold_are_cleared_in_the_hash() -> None:
    from datetime import UTC, datetime

    from schemas import CustomerState
    from stream.core.fold import to_profile

    found = rules({"*": 100, "books": 20, "music": 30}, {("*", "music"): 10, ("books", "music"): 8})
    now = datetime(2024, 6, 1, tzinfo=UTC)
    reader = CustomerState(customer_id="c", categories_bought=["books"], last_event_at=now)
    assert to_profile(reader, now, affinity=found).next_best_categories == "music:4.00"
    both = reader.model_copy(update={"categories_bought": ["books", "music"]})
    # written as empty (not left out), so the hash no longer offers music; without rules it is left out
    assert to_profile(both, now, affinity=found).next_best_categories == ""
    assert to_profile(both, now).next_best_categories is None
