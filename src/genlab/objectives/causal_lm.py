"""Causal language modelling: predict each next token.

    L = -(1/N) sum_t log p(x_{t+1} | x_{<=t})

averaged over the N target positions that are not ``ignore_index`` (-100).

The model returns its logits (B, T, V), or an output with ``.logits`` and ``.aux_loss``
(``genlab.models.outputs.ModelOutput``, read by its attributes: objectives do not import
models). An aux loss the model reports (a mixture-of-experts balancing loss, ...) is passed
on as the metric ``aux_loss``, which the training engine adds to what it backpropagates;
the returned loss, and so ``train_loss`` and ``val_loss``, stays the cross-entropy alone.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
    inputs, targets = batch
    out = model(inputs)
    logits, aux = (out, None) if isinstance(out, torch.Tensor) else (out.logits, out.aux_loss)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
    return loss, aux


def causal_lm_loss(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """batch = (inputs (B, T), targets (B, T)); model(inputs) -> logits (B, T, V) or a ModelOutput.

    Returns the loss, or ``(loss, {"aux_loss": aux})`` when the model's output carries one.
    """
    loss, aux = _cross_entropy(model, batch)
    return loss if aux is None else (loss, {"aux_loss": aux})


@torch.no_grad()
def mean_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], device=None) -> float:
    """Token-weighted mean of the causal LM loss (the cross-entropy, no aux loss) over fixed batches."""
    total, count = 0.0, 0
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        n = int((y != -100).sum())
        total += _cross_entropy(model, (x, y))[0].item() * n
        count += n
    return total / max(count, 1)
