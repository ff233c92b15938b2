"""Causal language modelling: predict each next token.

    L = -(1/N) sum_t log p(x_{t+1} | x_{<=t})

averaged over the N target positions that are not ``ignore_index`` (-100).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """batch = (inputs (B, T), targets (B, T)); model(inputs) -> logits (B, T, V)."""
    inputs, targets = batch
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


@torch.no_grad()
def mean_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], device=None) -> float:
    """Token-weighted mean of the causal LM loss over fixed evaluation batches."""
    total, count = 0.0, 0
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        n = int((y != -100).sum())
        total += causal_lm_loss(model, (x, y)).item() * n
        count += n
    return total / max(count, 1)
