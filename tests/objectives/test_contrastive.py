"""InfoNCE on hand-made embeddings."""

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.objectives.contrastive import info_nce


def test_info_nce_matches_the_formula_written_out():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    loss, metrics = info_nce(a, b, temperature=0.1)
    s = (a @ b.T) / 0.1
    forward = -sum(s[i, i] - torch.logsumexp(s[i], 0) for i in range(5)) / 5
    backward = -sum(s[i, i] - torch.logsumexp(s[:, i], 0) for i in range(5)) / 5
    assert loss.item() == pytest.approx(((forward + backward) / 2).item(), rel=1e-6)
    assert info_nce(a, b, 0.1, symmetric=False)[0].item() == pytest.approx(forward.item(), rel=1e-6)
    assert metrics["pair_accuracy"] == (s.argmax(-1) == torch.arange(5)).float().mean().item()


def test_identical_orthogonal_pairs_are_found_and_a_shuffle_is_not():
    a = torch.eye(4)
    loss, metrics = info_nce(a, a.clone(), temperature=0.05)
    assert metrics["pair_accuracy"] == 1.0 and loss.item() < 1e-6  # cos 1 against cos 0, sharpened by 1/0.05
    loss, metrics = info_nce(a, a[[1, 2, 3, 0]], temperature=0.05)
    assert metrics["pair_accuracy"] == 0.0 and loss.item() > 19.0  # ~ 1/tau = 20 nats
    same = torch.ones(4, 4) / 2  # every b equally close: log B
    assert info_nce(same, same)[0].item() == pytest.approx(math.log(4), rel=1e-6)


def test_bad_shapes_and_temperature_are_errors():
    with pytest.raises(ValueError, match="one shape"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.zeros(3, 4), torch.zeros(3, 4), temperature=0.0)
