"""Position information: learned tables, fixed sinusoids, rotary embeddings and ALiBi biases.

Learned absolute positions (GPT-1/2, BERT) are an ``nn.Embedding`` owned by the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """Fixed encodings of Vaswani et al. 2017 (arXiv:1706.03762), shape (n_pos, dim):

    PE[p, 2i]   = sin(p / 10000^(2i/dim))
    PE[p, 2i+1] = cos(p / 10000^(2i/dim))
    """
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_pos, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Rotary(nn.Module):
    """Rotary position embedding (RoPE: Su et al. 2021, arXiv:2104.09864).

    Each pair of channels (x_{2i}, x_{2i+1}) of a query or key at position p is rotated
    by the angle p * theta^(-2i/D):

        [x'_{2i}  ]   [cos  -sin] [x_{2i}  ]
        [x'_{2i+1}] = [sin   cos] [x_{2i+1}]

    so q_m . k_n depends on positions only through m - n. Here the pairs are the two
    halves of the head dim (the "rotate half" layout), which is the same rotation with
    the channels permuted.
    """

    def __init__(self, head_dim: int, max_pos: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv_freq)  # (P, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, H, T, D) -> rotated x. Positions are ``offset .. offset + T - 1``, or
        ``positions`` of shape (T,) or (B, T) (left-padded batches)."""
        if positions is None:
            cos, sin = self.cos[offset : offset + x.size(-2)], self.sin[offset : offset + x.size(-2)]  # (T, D/2)
        else:
            cos, sin = self.cos[positions], self.sin[positions]  # (T, D/2) or (B, T, D/2)
            if positions.dim() == 2:
                cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D/2)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's per-head slopes m_h, shape (H,) (Press et al. 2021, arXiv:2108.12409, section 3).

    For H a power of 2 the slopes are the geometric sequence m_h = 2^(-8h/H), h = 1 .. H
    (H = 8: 1/2, 1/4, ..., 1/256). Otherwise, with n the largest power of 2 below H, the
    paper takes the n slopes of that sequence for n heads, then the H - n first of the
    slopes for 2n heads that fall between them (its odd-numbered terms 2^(-8h/2n), h = 1, 3, 5, ...).
    """
    if n_head < 1:
        raise ValueError(f"ALiBi needs at least one head, got {n_head}")

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(n) + geometric(2 * n)[0::2][: n_head - n]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(nn.Module):
    """Attention with Linear Biases (Press et al. 2021, arXiv:2108.12409).

    No position embedding: each head h adds a penalty linear in the distance between the
    query at position i and the key at position j to the attention scores,

        softmax(q_i K^T / sqrt(D) + m_h [-(i - 0), ..., -(i - j), ..., 0])

    i.e. bias[h, i, j] = -m_h (i - j), with the per-head slopes of :func:`alibi_slopes`.
    Only differences of positions matter, so left padding (every position of a row shifted
    by the same amount) leaves a row's biases unchanged. Keys after the query (j > i) get a
    positive bias; a causal mask hides them.
    """

    def __init__(self, n_head: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_head), persistent=False)  # (H,)

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """q_pos (T,) or (B, T) and k_pos (S,) or (B, S) positions -> bias (1 or B, H, T, S)."""
        q_pos = q_pos if q_pos.dim() == 2 else q_pos[None]  # (B|1, T)
        k_pos = k_pos if k_pos.dim() == 2 else k_pos[None]  # (B|1, S)
        dist = q_pos[:, None, :, None] - k_pos[:, None, None, :]  # (B|1, 1, T, S): i - j
        return -self.slopes[:, None, None] * dist  # (B|1, H, T, S)


def sinusoidal_halves_table(n_pos: int, dim: int) -> torch.Tensor:
    """The sinusoids of Vaswani et al. 2017 in the layout of Marian and PEGASUS (and their
    Hugging Face ports), shape (n_pos, dim): every sine first, then every cosine,

        PE[p, i]          = sin(p / 10000^(2i/dim))      i < ceil(dim / 2)
        PE[p, dim/2 + i]  = cos(p / 10000^(2i/dim))

    the same numbers as :func:`sinusoidal_table` with the channels permuted. Computed in
    float64 and rounded once, as the Hugging Face tables are.
    """
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]  # (P, 1)
    freq = 10000.0 ** (-2.0 * torch.arange((dim + 1) // 2, dtype=torch.float64) / dim)  # (ceil(dim/2),)
    angles = pos * freq  # (P, ceil(dim/2))
    return torch.cat([angles.sin(), angles.cos()[:, : dim // 2]], dim=1).float()  # (P, dim)


def t5_buckets(
    relative: torch.Tensor, bidirectional: bool, n_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """T5's bucket of each relative position r = key - query (Raffel et al. 2020, arXiv:1910.10683,
    section 2.1; the mapping of the Mesh TensorFlow code that T5 was trained with).

    Bidirectional (encoder): half the buckets for keys before the query, half for keys after it
    (n = n_buckets / 2 each side, offset n for r > 0). Causal (decoder): all n = n_buckets buckets
    for the past, d = max(-r, 0). Within a side, with d = |r| (or max(-r, 0)) and e = n / 2:

        bucket(d) = d                                                 d < e  (one bucket per distance)
        bucket(d) = min(e + floor(log(d / e) / log(M / e) * (n - e)), n - 1)   d >= e

    so distances grow logarithmically per bucket up to M = max_distance, and every distance
    beyond M shares the last bucket.
    """
    n, offset = n_buckets, torch.zeros_like(relative)
    if bidirectional:
        n //= 2
        offset = (relative > 0).long() * n
        dist = relative.abs()
    else:
        dist = (-relative).clamp(min=0)
    exact = n // 2
    far = exact + (torch.log(dist.float() / exact) / math.log(max_distance / exact) * (n - exact)).long()
    far = far.clamp(max=n - 1)
    return offset + torch.where(dist < exact, dist, far)


class RelativePositionBias(nn.Module):
    """T5's bucketed relative position bias: one learned scalar per (bucket, head), added to the
    attention scores, bias[h, i, j] = table[bucket(j - i), h] (see :func:`t5_buckets`).

    T5 computes it in the first layer of each stack and every layer reuses it; the encoder
    buckets both directions, the decoder only the past.
    """

    def __init__(self, n_head: int, bidirectional: bool, n_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.table = nn.Embedding(n_buckets, n_head)
        self.bidirectional, self.n_buckets, self.max_distance = bidirectional, n_buckets, max_distance

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """q_pos (T,) and k_pos (S,) positions -> bias (1, H, T, S)."""
        relative = k_pos[None, :] - q_pos[:, None]  # (T, S): key - query
        buckets = t5_buckets(relative, self.bidirectional, self.n_buckets, self.max_distance)  # (T, S)
        return self.table(buckets).permute(2, 0, 1)[None]  # (1, H, T, S)
