"""Classification: cross-entropy over K classes and accuracy.

L = -(1/B) sum_b log softmax(f(x_b))[y_b]
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.models.outputs import aux_metric


def classification_loss(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of the logits against the labels; ``label_smoothing`` eps trains against
    (1 - eps) one-hot + eps / classes (Szegedy et al. 2016)."""
    x, y = batch
    return F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean loss and accuracy over a whole set, in batches (model in eval mode by the caller)."""
    device = next(model.parameters()).device
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model(xb).float()
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(-1) == yb).sum())
    return {"loss": loss / len(x), "accuracy": correct / len(x)}


def sequence_classification_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of an encoder's sequence-classification head on a padded batch
    (``input_ids``, ``attention_mask``, ``labels``), with the batch's training accuracy (and an MoE
    encoder's balancing loss as ``aux_loss``)."""
    out = model(batch["input_ids"], batch["attention_mask"], heads=["sequence"])
    logits = out.logits.float()  # (B, K)
    loss = F.cross_entropy(logits, batch["labels"])
    return loss, {"train_accuracy": (logits.argmax(-1) == batch["labels"]).float().mean().item(), **aux_metric(out)}
