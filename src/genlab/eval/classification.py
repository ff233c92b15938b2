"""Text classification metrics: logits of a sequence classifier over a tokenized set, accuracy and loss.

The model and tokenizer are passed in; the set is a tokenizer's ``Tokenized`` output, scored in
batches of similar length (:func:`genlab.data.text_tasks.length_sorted_batches`) and returned in its order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.data.text_tasks import length_sorted_batches
from genlab.data.tokenized import collate, lengths


def classifier_logits(model: nn.Module, tok: Any, done: Any, batch_size: int = 64) -> torch.Tensor:
    """Logits (N, K) of a non-empty tokenized set, in its order (eval mode is the caller's). ``model``
    is called as given (a compiled or DDP-wrapped module too)."""
    device = next(model.parameters()).device
    out = None
    with torch.inference_mode():
        for rows in length_sorted_batches(lengths(done), batch_size):
            b = {k: v.to(device) for k, v in collate(tok, done, rows).items()}
            logits = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], heads=["sequence"]).logits
            if out is None:
                out = torch.empty(len(done), logits.shape[-1])  # (N, K)
            out[torch.from_numpy(rows)] = logits.float().cpu()
    if out is None:
        raise ValueError("no texts to classify")
    return out


def classification_scores(logits: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy and accuracy of logits (N, K) against integer labels (N,)."""
    y = torch.from_numpy(labels)
    return {"loss": F.cross_entropy(logits, y).item(), "accuracy": (logits.argmax(-1) == y).double().mean().item()}
