"""Autoregressive decoding for any model mapping ids (B, T) to logits (B, T, V).

This is the plain loop: the whole (cropped) context is recomputed each step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn

from genlab.generation.processors import check_sampling, sample_next


@torch.no_grad()
def generate(
    model: nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    block_size: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ids: (B, T) prompt -> (B, T + max_new_tokens); the context keeps the last ``block_size`` tokens."""
    for token in stream(model, ids, max_new_tokens, block_size, temperature, top_k, top_p, generator):
        ids = torch.cat([ids, token[:, None]], dim=1)
    return ids


@torch.no_grad()
def stream(
    model: nn.Module,
    ids: torch.Tensor,
    max_new_tokens: int,
    block_size: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield each new token, shape (B,)."""
    check_sampling(temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = model(ids[:, -block_size:])[:, -1, :]  # (B, V)
            token = sample_next(logits, temperature, top_k, top_p, generator)
            ids = torch.cat([ids, token[:, None]], dim=1)
            yield token
    finally:
        model.train(was_training)
