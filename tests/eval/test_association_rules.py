"""Apriori and association rules on hand-made transactions whose support, confidence and lift are known."""

import itertools

import numpy as np
import pytest

from genlab.core.errors import ConfigError, DataError
from genlab.eval.baskets import Rule, association_rules, frequent_itemsets, one_hot

# 8 baskets. Counts: milk 6, bread 5, butter 3, beer 2, chips 2;
# {milk, bread} 4, {bread, butter} 3, {milk, butter} 2, {milk, bread, butter} 2, {beer, chips} 2.
BASKETS = [
    ["milk", "bread", "butter"],
    ["milk", "bread", "butter"],
    ["bread", "butter"],
    ["milk", "bread"],
    ["milk", "bread"],
    ["milk"],
    ["milk", "beer", "chips"],
    ["beer", "chips"],
]


def support(items) -> float:
    return sum(set(items) <= set(b) for b in BASKETS) / len(BASKETS)


def test_one_hot_drops_rare_items_but_keeps_every_basket():
    m, items = one_hot(BASKETS, min_support=0.3)
    assert items == ["bread", "butter", "milk"]  # beer and chips are in 2 / 8 = 0.25 < 0.3
    assert m.shape == (8, 3) and m.dtype == bool
    assert m[7].tolist() == [False, False, False]  # the beer-and-chips basket still counts in N
    assert m[0].tolist() == [True, True, True]


def test_frequent_itemsets_have_the_supports_counted_by_hand():
    found = dict(frequent_itemsets(BASKETS, min_support=0.25))
    assert found == pytest.approx(
        {
            ("milk",): 6 / 8,
            ("bread",): 5 / 8,
            ("butter",): 3 / 8,
            ("beer",): 2 / 8,
            ("chips",): 2 / 8,
            ("bread", "milk"): 4 / 8,
            ("bread", "butter"): 3 / 8,
            ("butter", "milk"): 2 / 8,
            ("beer", "chips"): 2 / 8,
            ("bread", "butter", "milk"): 2 / 8,
        }
    )
    # the reference: every itemset of the items, counted directly
    universe = sorted({i for b in BASKETS for i in b})
    for r in range(1, 4):
        for s in itertools.combinations(universe, r):
            assert (s in found) == (support(s) >= 0.25)
    assert [s for s, _ in frequent_itemsets(BASKETS, 0.25, max_len=1)] == [
        ("milk",),
        ("bread",),
        ("butter",),
        ("beer",),
        ("chips",),
    ]  # by support, ties alphabetical


def test_rules_have_the_confidence_and_lift_of_their_definitions():
    rules = {(r.antecedent, r.consequent): r for r in association_rules(BASKETS, 0.25, min_confidence=0.6)}
    butter_bread = rules[(("butter",), ("bread",))]
    # support {butter, bread} = 3/8; confidence = 3/3 = 1; lift = 1 / support(bread) = 1 / (5/8) = 1.6
    assert (butter_bread.support, butter_bread.confidence, butter_bread.lift) == pytest.approx((3 / 8, 1.0, 1.6))
    beer_chips = rules[(("beer",), ("chips",))]
    assert (beer_chips.confidence, beer_chips.lift) == pytest.approx((1.0, 4.0))  # 1 / (2/8)
    bread_milk = rules[(("bread",), ("milk",))]
    assert (bread_milk.confidence, bread_milk.lift) == pytest.approx((4 / 5, (4 / 5) / (6 / 8)))
    assert (("milk",), ("butter",)) not in rules  # confidence 2/6 < 0.6
    two = rules[(("butter", "milk"), ("bread",))]
    assert (two.support, two.confidence, two.lift) == pytest.approx((2 / 8, 1.0, 1.6))
    for (a, c), r in rules.items():  # every rule against the definitions, and the threshold
        assert not set(a) & set(c)
        conf = support(a + c) / support(a)
        assert r.confidence == pytest.approx(conf) and conf >= 0.6
        assert r.lift == pytest.approx(conf / support(c)) and r.support == pytest.approx(support(a + c))
    ordered = association_rules(BASKETS, 0.25, 0.6)
    assert [r.lift for r in ordered] == sorted((r.lift for r in ordered), reverse=True)
    assert ordered[0].lift == pytest.approx(4.0)
    assert Rule(("a",), ("b",), 0.5, 1.0, 2.0).as_dict() == {
        "antecedent": ["a"],
        "consequent": ["b"],
        "support": 0.5,
        "confidence": 1.0,
        "lift": 2.0,
    }


def test_no_rules_when_nothing_pairs_up_and_bad_thresholds_are_errors():
    assert association_rules([["a"], ["b"], ["c"]], 0.3) == []  # three single items, no pair is frequent
    assert association_rules([["a"], ["a"]], 0.5) == []  # one frequent item: no rule
    assert frequent_itemsets([["a"], ["b"]], 0.9) == []
    with pytest.raises(ConfigError, match="min support"):
        frequent_itemsets(BASKETS, 0.0)
    with pytest.raises(ConfigError, match="min confidence"):
        association_rules(BASKETS, 0.25, 1.5)
    with pytest.raises(ConfigError, match="max itemset length"):
        frequent_itemsets(BASKETS, 0.25, max_len=0)
    with pytest.raises(DataError, match="no baskets"):
        association_rules([], 0.1)
    assert np.isclose(sum(s for (i,), s in frequent_itemsets(BASKETS, 0.01, 1) if i in ("beer", "chips")), 0.5)
