"""A reward model from pairwise preferences (Bradley-Terry).

InstructGPT (Ouyang et al. 2022, arXiv:2203.02155, eq. 1) trains r_theta so that the answer
people preferred scores higher::

    P(y_w > y_l | x) = sigma(r(x, y_w) - r(x, y_l))          Bradley & Terry 1952
    L = -E[ log sigma(r(x, y_w) - r(x, y_l) - margin) ]

A batch is the chosen rows then the rejected rows: ``ids`` (2B, T), ``attention_mask`` (2B, T);
the model is a :class:`genlab.models.heads.ScoreModel` read at each row's last real token.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scores (B,) of the preferred and the other answer -> loss, {accuracy, margin}."""
    diff = chosen.float() - rejected.float()
    loss = -F.logsigmoid(diff - margin).mean()
    with torch.no_grad():
        metrics = {"accuracy": (diff > 0).float().mean(), "margin": diff.mean()}
    return loss, metrics


def pair_scores(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(2B, T) chosen-then-rejected rows -> scores of the chosen (B,) and of the rejected (B,)."""
    scores = model.score(ids, attention_mask)  # (2B,)
    chosen, rejected = scores.chunk(2)
    return chosen, rejected


def reward_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
    """The trainer's loss: batch = (ids (2B, T), attention_mask (2B, T))."""
    ids, attention_mask = batch
    return bradley_terry_loss(*pair_scores(model, ids, attention_mask))


@torch.no_grad()
def pairwise_accuracy(model: nn.Module, batches) -> float:
    """Share of pairs whose chosen answer the model scores higher, over fixed batches."""
    right = total = 0
    for ids, attention_mask in batches:
        chosen, rejected = pair_scores(model, ids, attention_mask)
        right += int((chosen > rejected).sum())
        total += chosen.numel()
    return right / max(total, 1)


__all__ = ["bradley_terry_loss", "pair_scores", "pairwise_accuracy", "reward_step"]
