"""Logits processors: pure functions (B, V) -> (B, V), composed in a fixed order.

Filtered-out tokens get -inf, so softmax gives them probability 0. Order used by
:func:`process`: banned tokens, penalties, temperature, top-k, top-p, min-p.
"""

from __future__ import annotations

import torch

from genlab.core.errors import ConfigError

NEG_INF = float("-inf")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """p_i ∝ exp(z_i / t): t < 1 sharpens, t > 1 flattens (t = 0 is greedy, handled by the sampler)."""
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (Fan et al. 2018, arXiv:1805.04833)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


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
    drop_sorted[..., 0] = False  # a p below float32's range rounds to 0, which would drop them all
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Min-p sampling (Nguyen et al. 2024, arXiv:2407.01082): keep token i when
    p_i >= p * max_j p_j, a threshold that scales with the model's confidence."""
    if p <= 0.0:
        return logits
    probs = torch.softmax(logits.float(), dim=-1)
    return logits.masked_fill(probs < p * probs.max(dim=-1, keepdim=True).values, NEG_INF)


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, r: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019, arXiv:1909.05858) on tokens already in the
    context (``seen``: (B, V) bool): z_i / r if z_i > 0 else z_i * r."""
    if r == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / r, logits * r)
    return torch.where(seen, penalised, logits)


def frequency_presence_penalty(
    logits: torch.Tensor, counts: torch.Tensor, frequency: float, presence: float
) -> torch.Tensor:
    """OpenAI-style penalties on generated tokens (``counts``: (B, V) occurrences so far):

    z_i - frequency * c_i - presence * [c_i > 0]
    """
    if frequency == 0.0 and presence == 0.0:
        return logits
    counts = counts.to(logits.dtype)
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def ban(logits: torch.Tensor, tokens: list[int] | tuple[int, ...]) -> torch.Tensor:
    """Tokens that may never be generated."""
    if not tokens:
        return logits
    out = logits.clone()
    out[:, list(tokens)] = NEG_INF
    return out


def check_sampling(t: float, k: int, p: float, mp: float = 0.0) -> None:
    if t < 0:
        raise ConfigError(f"temperature must be >= 0 (0 is greedy), got {t}")
    if k < 0:
        raise ConfigError(f"top-k must be >= 0 (0 disables it), got {k}")
    if not 0.0 < p <= 1.0:
        raise ConfigError(f"top-p must be in (0, 1] (1 disables it), got {p}")
    if not 0.0 <= mp < 1.0:
        raise ConfigError(f"min-p must be in [0, 1) (0 disables it), got {mp}")


def sample_next(
    logits: torch.Tensor,
    t: float = 1.0,
    k: int = 0,
    p: float = 1.0,
    generator: torch.Generator | None = None,
    mp: float = 0.0,
) -> torch.Tensor:
    """(B, V) logits of the last position -> (B,) next token ids (t = 0: argmax)."""
    if t == 0:
        return logits.argmax(dim=-1)
    z = temperature(logits.float(), t)
    if bool(torch.isnan(z).any() | (z == float("inf")).any()):
        # t so small that logits / t overflow (or t rounds to 0 in fp32): the distribution is one-hot on
        # the argmax, which no filter removes
        return logits.argmax(dim=-1)
    logits = min_p(top_p(top_k(z, k), p), mp)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
