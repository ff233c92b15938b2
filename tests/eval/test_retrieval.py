"""Ranking metrics on a hand-made ranking with known ranks."""

import pytest
import torch

from genlab.eval.retrieval import ranking_metrics, ranks


def test_mrr_and_recall_at_k_exact_values() -> None:
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3],  # right answer 0 is first: rank 1
            [0.5, 0.4, 0.6, 0.1],  # right answer 1 has 0.5 and 0.6 above it: rank 3
            [0.2, 0.2, 0.2, 0.2],  # ties go to the right answer: rank 1
            [0.4, 0.3, 0.2, 0.1],  # right answer 3 is last: rank 4
        ]
    )
    target = torch.tensor([0, 1, 2, 3])
    assert ranks(scores, target).tolist() == [1, 3, 1, 4]
    m = ranking_metrics(scores, target, ks=(1, 3), chunk=3)  # chunks of 3 + 1 queries
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 + 1 / 4) / 4)
    assert m["recall@1"] == 0.5 and m["recall@3"] == 0.75 and m["queries"] == 4


def test_ranking_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"target indices"):
        ranks(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"scores \(Q, N\)"):
        ranks(torch.zeros(3), torch.tensor([0]))
    with pytest.raises(ValueError, match="no queries"):
        ranking_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
