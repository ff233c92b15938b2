"""In-batch contrastive loss (InfoNCE) for bi-encoders: dense retrieval and paired embeddings.

Given B pairs whose embeddings are unit vectors a_i (a query, a docstring) and b_i (its document,
its code), every other b_j of the batch is a negative for a_i:

    L = -1/2B sum_i [ log softmax_j(a_i . b_j / tau)_i + log softmax_j(b_i . a_j / tau)_i ]

the symmetric form of CLIP (Radford et al. 2021); one direction alone is Sentence-BERT's
MultipleNegativesRankingLoss (Henderson et al. 2017) and the loss CodeBERT fine-tunes code search
with (Feng et al. 2020). The temperature tau sharpens the softmax over cosines in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.05, symmetric: bool = True):
    """a, b (B, C) unit-norm embeddings of B matching pairs -> (loss, {"pair_accuracy"}): the mean
    cross-entropy of picking each row's partner among the batch, both ways if ``symmetric``;
    pair_accuracy is the fraction of rows of a whose nearest b is their partner."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (B, C) embeddings of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = (a @ b.T).float() / temperature  # (B, B); the diagonal holds the pairs
    target = torch.arange(len(a), device=a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss, {"pair_accuracy": (logits.argmax(-1) == target).float().mean().item()}
