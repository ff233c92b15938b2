"""Position information: learned tables, fixed sinusoids and rotary embeddings.

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
