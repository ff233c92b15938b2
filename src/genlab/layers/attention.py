"""Scaled dot-product attention: an eager reference and the fused SDPA kernel.

Axes: B batch, H heads, T query time, S key time, D head dim, C model dim.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + M) V        (Vaswani et al. 2017, arXiv:1706.03762)

M is 0 where a query may look and -inf where it may not (future positions under a
causal mask, padding under a padding mask). Masks here are boolean, broadcastable to
(B, H, T, S), with True meaning "may attend". Both backends take the same arguments
and are tested equal; pick one by name through :data:`ATTENTION`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.layers.kv_cache import KVCache
from genlab.layers.linear import Linear


def causal_mask(t: int, s: int, device=None) -> torch.Tensor:
    """(T, S) boolean mask aligned bottom-right: query i sees keys j <= i + (S - T)."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def padding_mask(attention_mask: torch.Tensor, t: int | None = None) -> torch.Tensor:
    """(B, S) 1/0 mask of real/padding tokens -> boolean key mask.

    Without ``t``: (B, 1, 1, S). With ``t`` (the number of queries, the last t of the S
    positions): (B, 1, t, S), where a padding query may also see itself, so that no row is
    fully masked (a fully masked row makes softmax 0/0 = NaN, and NaN values at padding
    positions would leak into real rows through 0 * NaN in the next layer).
    """
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    if t is None:
        return keys
    s = attention_mask.size(1)
    own = torch.arange(s, device=keys.device)[None, :] == torch.arange(s - t, s, device=keys.device)[:, None]
    return keys | own  # (B, 1, t, S)


def _combine(mask: torch.Tensor | None, is_causal: bool, t: int, s: int, device) -> torch.Tensor | None:
    if not is_causal:
        return mask
    causal = causal_mask(t, s, device)
    return causal if mask is None else mask & causal


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Reference implementation, written out step by step. q: (B, H, T, D), k/v: (B, H, S, D)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    mask = _combine(mask, is_causal, q.size(-2), k.size(-2), q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    weights = torch.nan_to_num(weights)  # rows with every key masked attend to nothing
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, H, T, D)


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """PyTorch's fused kernel (flash / memory-efficient / math, chosen by PyTorch)."""
    t, s = q.size(-2), k.size(-2)
    if is_causal and mask is None and t == s:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    mask = _combine(mask, is_causal, t, s, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


AttentionFn = Callable[..., torch.Tensor]

ATTENTION: dict[str, AttentionFn] = {"eager": eager_attention, "sdpa": sdpa_attention}


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection.

    ``rotary`` (optional) is applied to q and k after the head split, so any
    position scheme that acts on queries and keys (RoPE) plugs in here. ``causal=False``
    with a padding mask is the bidirectional attention of encoders (BERT). ``dropout``
    applies to the output projection and, unless ``attn_dropout`` is given, to the
    attention weights too (BERT configs set the two apart).
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        bias: bool = True,
        dropout: float = 0.0,
        backend: str = "sdpa",
        causal: bool = True,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        if dim % n_head:
            raise ValueError(f"model dim {dim} is not divisible by n_head {n_head}")
        if backend not in ATTENTION:
            raise ValueError(f"unknown attention backend '{backend}'; choose from {sorted(ATTENTION)}")
        self.n_head, self.head_dim = n_head, dim // n_head
        self.qkv = Linear(dim, 3 * dim, bias=bias)
        self.proj = Linear(dim, dim, bias=bias)
        self.dropout = dropout if attn_dropout is None else attn_dropout  # on the attention weights
        self.resid_dropout = nn.Dropout(dropout)
        self.attend = ATTENTION[backend]
        self.causal = causal

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        rotary: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x: (B, T, C). ``mask``: boolean, broadcastable to (B, H, T, S), True = may attend.
        With a ``cache`` the new keys/values are stored at the cache's next positions and
        the queries attend over everything cached so far (S = cached + T)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # (B, H, S, D)
        p = self.dropout if self.training else 0.0
        causal = self.causal and T > 1  # one new query may see every cached key
        y = self.attend(q, k, v, mask=mask, is_causal=causal, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))
