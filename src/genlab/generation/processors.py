"""Logits processors: pure functions (B, V) -> (B, V), composed in order.

Each returns new logits; filtered-out tokens get -inf so softmax gives them 0.
"""

from __future__ import annotations

import torch

from genlab.core.errors import ConfigError


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """p_i ∝ exp(z_i / t): t < 1 sharpens, t > 1 flattens (t = 0 is greedy, handled by the sampler)."""
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (Fan et al. 2018, arXiv:1805.04833)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2019, arXiv:1904.09751).

    Keep the smallest set of most likely tokens whose probabilities sum to at least p:
    sort descending, and drop token j when the mass of the tokens before it already
    reaches p (the most likely token is always kept).
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def check_sampling(t: float, k: int, p: float) -> None:
    if t < 0:
        raise ConfigError(f"temperature must be >= 0 (0 is greedy), got {t}")
    if k < 0:
        raise ConfigError(f"top-k must be >= 0 (0 disables it), got {k}")
    if not 0.0 < p <= 1.0:
        raise ConfigError(f"top-p must be in (0, 1] (1 disables it), got {p}")


def sample_next(
    logits: torch.Tensor,
    t: float = 1.0,
    k: int = 0,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, V) logits of the last position -> (B,) next token ids."""
    if t == 0:
        return logits.argmax(dim=-1)
    logits = top_p(top_k(temperature(logits.float(), t), k), p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
