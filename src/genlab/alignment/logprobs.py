"""Log-probabilities of completions under a causal LM: the one place every stage reads them.

Axes: B batch, T time, V vocab. A batch of sequences is ``ids`` (B, T) with an
``attention_mask`` (B, T) (1 real, 0 padding, either side) and a ``completion_mask`` (B, T)
(1 on the tokens whose probability counts: an answer, an assistant turn). Token t is
predicted from the logits at t - 1, so every per-token tensor here is (B, T - 1) and lines up
with ``ids[:, 1:]``::

    log pi(y | x) = sum_t completion_mask[t] * log softmax(logits[t - 1])[ids[t]]
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.models.heads import positions_of


def forward_logits(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """model(ids) -> logits (B, T, V); padded batches get positions and the mask (GPT's contract)."""
    if attention_mask is None or bool(attention_mask.all()):
        out = model(ids)
    else:
        out = model(ids, positions=positions_of(attention_mask), attention_mask=attention_mask)
    return out if isinstance(out, torch.Tensor) else out.logits


def gather_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t] | ids[:, :t]) for t >= 1 from logits (B, T, V): (B, T - 1)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)


def token_logprobs(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token log-probabilities of ``ids`` under ``model``: (B, T - 1), aligned with ids[:, 1:]."""
    return gather_logprobs(forward_logits(model, ids, attention_mask), ids)


def sequence_logprobs(
    model: nn.Module,
    ids: torch.Tensor,
    completion_mask: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum of the completion tokens' log-probabilities per row: (B,)."""
    per_token = token_logprobs(model, ids, attention_mask)  # (B, T-1)
    return (per_token * completion_mask[:, 1:].to(per_token.dtype)).sum(-1)


__all__ = ["forward_logits", "gather_logprobs", "sequence_logprobs", "token_logprobs"]
