"""Market-basket analysis: frequent itemsets by apriori and the association rules they imply.

For N baskets (transactions) and itemsets A, C (Agrawal, Imieliński & Swami 1993; apriori:
Agrawal & Srikant 1994):

    support(A)        = |{baskets containing A}| / N
    support(A -> C)   = support(A ∪ C)
    confidence(A -> C) = support(A ∪ C) / support(A)          (the estimate of P(C | A))
    lift(A -> C)      = confidence(A -> C) / support(C)        (1: independent; > 1: bought together)

Apriori grows itemsets one item at a time and keeps only those with support >= ``min_support``:
every subset of a frequent itemset is frequent, so nothing is missed. mlxtend does the counting;
here the baskets are one-hot encoded first, keeping only the items that are frequent on their own
(an itemset holding a rarer item cannot be frequent, and every basket still counts in N, so the
supports are exact and the matrix stays (N, frequent items) instead of (N, all items)).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genlab.core.errors import ConfigError, DataError


@dataclass(frozen=True)
class Rule:
    """``antecedent -> consequent`` (each a sorted tuple of items) and its measures."""

    antecedent: tuple[str, ...]
    consequent: tuple[str, ...]
    support: float
    confidence: float
    lift: float

    def as_dict(self) -> dict:
        return {
            "antecedent": list(self.antecedent),
            "consequent": list(self.consequent),
            "support": self.support,
            "confidence": self.confidence,
            "lift": self.lift,
        }


def _check(baskets: Sequence[Sequence[str]], min_support: float, max_len: int | None) -> None:
    if len(baskets) == 0:
        raise DataError("no baskets: give at least one transaction")
    if not 0.0 < min_support <= 1.0:
        raise ConfigError(f"min support must be in (0, 1], got {min_support}")
    if max_len is not None and max_len < 1:
        raise ConfigError(f"max itemset length must be at least 1, got {max_len}")


def one_hot(baskets: Sequence[Sequence[str]], min_support: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """The (N, M) bool matrix of which basket holds which item, over the M items (sorted) whose own
    support is at least ``min_support``; every basket keeps its row, even one left with no item."""
    counts = Counter(i for b in baskets for i in set(b))
    n = len(baskets)
    items = sorted(i for i, c in counts.items() if c / n >= min_support)
    col = {item: j for j, item in enumerate(items)}
    m = np.zeros((n, len(items)), dtype=bool)
    for r, b in enumerate(baskets):
        js = [col[i] for i in b if i in col]
        m[r, js] = True
    return m, items


def frequent_itemsets(
    baskets: Sequence[Sequence[str]], min_support: float = 0.01, max_len: int | None = None
) -> list[tuple[tuple[str, ...], float]]:
    """Every itemset (sorted tuple) of at most ``max_len`` items with support >= ``min_support``,
    with its support; by support, highest first (ties: shorter, then alphabetical)."""
    _check(baskets, min_support, max_len)
    import pandas as pd
    from mlxtend.frequent_patterns import apriori

    m, items = one_hot(baskets, min_support)
    if not items:
        return []
    df = apriori(pd.DataFrame(m, columns=items), min_support=min_support, use_colnames=True, max_len=max_len)
    found = [(tuple(sorted(s)), float(v)) for s, v in zip(df["itemsets"], df["support"])]
    return sorted(found, key=lambda t: (-t[1], len(t[0]), t[0]))


def association_rules(
    baskets: Sequence[Sequence[str]],
    min_support: float = 0.01,
    min_confidence: float = 0.5,
    max_len: int | None = None,
) -> list[Rule]:
    """The rules A -> C (A, C disjoint, A ∪ C a frequent itemset of at most ``max_len`` items) with
    confidence >= ``min_confidence``; by lift, highest first (ties: confidence, support, then the items)."""
    _check(baskets, min_support, max_len)
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min confidence must be in [0, 1], got {min_confidence}")
    import pandas as pd
    from mlxtend.frequent_patterns import apriori
    from mlxtend.frequent_patterns import association_rules as mlxtend_rules

    m, items = one_hot(baskets, min_support)
    if len(items) < 2:
        return []
    frequent = apriori(pd.DataFrame(m, columns=items), min_support=min_support, use_colnames=True, max_len=max_len)
    if (frequent["itemsets"].map(len) > 1).sum() == 0:
        return []
    df = mlxtend_rules(
        frequent,
        num_itemsets=len(baskets),
        metric="confidence",
        min_threshold=min_confidence,
        return_metrics=["support", "confidence", "lift"],
    )
    rules = [
        Rule(tuple(sorted(a)), tuple(sorted(c)), float(s), float(conf), float(lift))
        for a, c, s, conf, lift in zip(
            df["antecedents"], df["consequents"], df["support"], df["confidence"], df["lift"]
        )
    ]
    return sorted(rules, key=lambda r: (-r.lift, -r.confidence, -r.support, r.antecedent, r.consequent))
