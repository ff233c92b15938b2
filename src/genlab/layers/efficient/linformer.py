"""Linformer: self-attention with keys and values projected along the sequence to a fixed length k.

Wang, Li, Khabsa, Fang & Ma 2020, "Linformer: Self-Attention with Linear Complexity", arXiv:2006.04768.

Axes: B batch, H heads, T time (at most n, the fixed length), D head dim, C model dim,
k the projected length.

    head_h = softmax(Q_h (E K_h)^T / sqrt(D)) (F V_h)        E, F: (k, n) learned      (eq. 7)

so the score matrix is (T, k) instead of (T, T): time and memory O(T k). E and F are shared by
the heads of a layer (the paper's headwise sharing); ``share="kv"`` uses one matrix for both
(E = F, key-value sharing) and a :class:`SequenceProjection` passed to several layers shares it
across layers (layerwise sharing). A sequence shorter than n uses E's first T columns (the same
as padding it with zeros to n); padding positions are zeroed before the projection, so they add
nothing to the projected keys and values. Every position mixes into every projected key:
Linformer is bidirectional only (encoders), and it cannot take a sequence longer than n.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from genlab.layers.attention import sdpa_attention
from genlab.layers.linear import Linear


class SequenceProjection(nn.Module):
    """E (and F unless shared): (k, n) matrices that map a length-T sequence (T <= n) to length k."""

    def __init__(self, seq_len: int, k: int, share_kv: bool = False):
        super().__init__()
        if k < 1 or seq_len < 1:
            raise ValueError(f"linformer needs k >= 1 and a fixed length >= 1, got k={k}, n={seq_len}")
        self.seq_len, self.k = seq_len, k
        self.e = nn.Parameter(torch.randn(k, seq_len) / math.sqrt(k))  # N(0, 1/k) as in the paper
        self.f = None if share_kv else nn.Parameter(torch.randn(k, seq_len) / math.sqrt(k))

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """keys, values (B, H, T, D) -> (B, H, k, D) each."""
        n = keys.size(-2)
        if n > self.seq_len:
            raise ValueError(f"linformer has a fixed length of {self.seq_len}: a sequence of {n} does not fit")
        e = self.e[:, :n]  # (k, T)
        f = e if self.f is None else self.f[:, :n]
        return e @ keys, f @ values  # (B, H, k, D)


class LinformerAttention(nn.Module):
    """Bidirectional self-attention with low-rank keys and values; MultiHeadAttention's ``qkv`` and ``proj``.

    ``projection``: a :class:`SequenceProjection` to share with other layers (layerwise sharing);
    without it the layer owns one (``share_kv`` for E = F).
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        seq_len: int,
        k: int,
        *,
        causal: bool = False,
        share_kv: bool = False,
        projection: SequenceProjection | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        if causal:
            raise ValueError("linformer mixes every position into each projected key: it is bidirectional only")
        if dim % n_head:
            raise ValueError(f"model dim {dim} is not divisible by n_head {n_head}")
        self.n_head, self.head_dim = n_head, dim // n_head
        self.qkv = Linear(dim, 3 * dim, bias=bias)
        self.proj = Linear(dim, dim, bias=bias)
        self.seq = projection if projection is not None else SequenceProjection(seq_len, k, share_kv)
        self.dropout = dropout if attn_dropout is None else attn_dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, rotary=None, cache=None, bias=None, **_):
        """x (B, T, C) -> (B, T, C); ``mask``: key padding mask broadcastable to (B, 1, 1, T)."""
        if cache is not None:
            raise ValueError("linformer is an encoder attention: it has no KV-cache decoding")
        if bias is not None:
            raise ValueError("linformer attention takes no additive bias over (T, T) scores")
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        q, k, v = self.qkv(x).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, D) each
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        if mask is not None:
            if mask.dim() != 4 or mask.size(-2) != 1:
                raise ValueError("linformer attention takes a key padding mask (B, 1, 1, T)")
            keep = mask[:, 0, 0, :].expand(B, T)[:, None, :, None].to(k.dtype)  # (B, 1, T, 1)
            k, v = k * keep, v * keep
        k, v = self.seq(k, v)  # (B, H, k, D)
        p = self.dropout if self.training else 0.0
        y = sdpa_attention(q, k, v, dropout_p=p)  # (B, H, T, D) from (T, k) scores
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))
