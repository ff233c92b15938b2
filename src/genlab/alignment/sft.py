"""Supervised fine-tuning: next-token loss on the assistant's tokens only.

    L = -(1/N) sum_t m_{t+1} log p(x_{t+1} | x_{<=t}),   N = sum_t m_{t+1}

where m is 1 on assistant tokens (the replies the model should learn to write) and 0 on the
system prompt, the user's turns and padding: the model still reads them as context (InstructGPT's
SFT stage, Ouyang et al. 2022, arXiv:2203.02155). Axes: B batch, T time.

A conversation is rendered by the run's chat template (:func:`genlab.tokenizers.chat.render_ids`):
the mask is 1 on each assistant turn's content and its end-of-turn markup, so the model learns to
close its turn. ``pack`` concatenates examples into full rows of ``block_size`` tokens (less
padding, the same loss per token).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genlab.core.errors import DataError
from genlab.objectives.causal_lm import causal_lm_loss

Example = tuple[list[int], list[int]]  # token ids, assistant mask (1/0), same length


def sft_targets(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (B, T) -> (inputs, targets) (B, T - 1): targets are -100 off the assistant tokens."""
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T-1)
    return ids[:, :-1], targets


def collate(examples: list[Example], block_size: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad examples to one (B, T) batch of ids and masks, T <= block_size + 1; a longer example
    keeps its last block_size + 1 tokens (the latest turns, where the reply is)."""
    width = min(max(len(i) for i, _ in examples), block_size + 1)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for r, (i, m) in enumerate(examples):
        i, m = i[-width:], m[-width:]
        ids[r, : len(i)] = torch.tensor(i)
        mask[r, : len(m)] = torch.tensor(m)
    return ids, mask


def pack(examples: list[Example], block_size: int) -> list[Example]:
    """Concatenate examples, in order, into rows of exactly block_size + 1 tokens (the tail is dropped)."""
    ids: list[int] = []
    mask: list[int] = []
    for i, m in examples:
        ids += i
        mask += m
    n = block_size + 1
    rows = [(ids[s : s + n], mask[s : s + n]) for s in range(0, len(ids) - n + 1, n)]
    if not rows:
        raise DataError(f"the examples hold {len(ids)} tokens, fewer than one packed row of {n}: turn packing off")
    return rows


def sft_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
    """batch = (ids, assistant mask), both (B, T) -> the assistant-only causal LM loss."""
    ids, mask = batch
    return causal_lm_loss(model, sft_targets(ids, mask))


__all__ = ["collate", "pack", "sft_loss", "sft_targets"]
