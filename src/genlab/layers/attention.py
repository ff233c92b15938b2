"""Scaled dot-product attention: an eager reference, the fused SDPA kernel, and the module.

Axes: B batch, H query heads, Hkv key/value heads, T query time, S key time, D head dim,
C model dim.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + A + M) V     (Vaswani et al. 2017, arXiv:1706.03762)

M is 0 where a query may look and -inf where it may not (future positions under a
causal mask, padding under a padding mask). Masks here are boolean, broadcastable to
(B, H, T, S), with True meaning "may attend". A is an optional additive float ``bias``
broadcastable to (B, H, T, S): relative-position terms such as ALiBi (Press et al. 2021,
arXiv:2108.12409) or T5's bucketed biases enter here.

Keys and values may have fewer heads than queries (Hkv divides H): grouped-query attention
(GQA: Ainslie et al. 2023, arXiv:2305.13245), with multi-query attention (MQA: Shazeer
2019, arXiv:1911.02150) the case Hkv = 1. Query head h reads key/value head
h // (H / Hkv), so a group of H / Hkv consecutive query heads shares one key/value head.

Every backend in :data:`ATTENTION` has the signature

    fn(q, k, v, mask=None, is_causal=False, dropout_p=0.0, bias=None) -> (B, H, T, D)

with q (B, H, T, D) and k, v (B, Hkv, S, D). The eager and SDPA backends also take
``scale`` (default 1 / sqrt(D)): T5 leaves its scores unscaled (scale=1.0; Raffel et al. 2020
fold 1 / sqrt(D) into the initialisation of the query weights). The module passes ``scale``
only when it is set, so backends without it keep working; each is tested equal to :func:`eager_attention`
(tests/layers/test_attention.py walks the dict). Add one with ``@register_attention(name)``.
A query row whose every key is masked attends to nothing: its output is 0, not NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.layers.kv_cache import KVCache
from genlab.layers.linear import Linear

AttentionFn = Callable[..., torch.Tensor]

#: Attention backends by name; every entry has the signature in the module docstring.
ATTENTION: dict[str, AttentionFn] = {}


def register_attention(name: str) -> Callable[[AttentionFn], AttentionFn]:
    """Decorator: add ``fn(q, k, v, mask=None, is_causal=False, dropout_p=0.0, bias=None)`` to ATTENTION."""

    def add(fn: AttentionFn) -> AttentionFn:
        if name in ATTENTION:
            raise ValueError(f"attention backend '{name}' is already registered")
        ATTENTION[name] = fn
        return fn

    return add


_TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
SDPA_GQA = _TORCH >= (2, 5)  # scaled_dot_product_attention(..., enable_gqa=True)
SDPA_ZERO_MASKED_ROWS = _TORCH >= (2, 5)  # fully masked rows come back as 0 (NaN before)


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


def repeat_kv(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, H, S, D): each key/value head repeated for its H / Hkv query heads."""
    groups = n_head // x.size(1)
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)  # (B, H, S, D)


@register_attention("eager")
def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Reference implementation, written out step by step. q: (B, H, T, D), k/v: (B, Hkv, S, D)."""
    weights = attention_weights(q, k, mask, is_causal, bias, scale)  # (B, H, T, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ repeat_kv(v, q.size(1))  # (B, H, T, D)


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """The eager path's softmax(Q K^T / sqrt(D) + A + M): (B, H, T, S), each row summing to 1 (0 where
    every key is masked). What the studio's attention view shows."""
    k = repeat_kv(k, q.size(1))  # (B, H, S, D)
    scores = q @ k.transpose(-2, -1)  # (B, H, T, S)
    scores = scores / math.sqrt(q.size(-1)) if scale is None else scores * scale
    if bias is not None:
        scores = scores + bias  # (B, H, T, S)
    mask = _combine(mask, is_causal, q.size(-2), k.size(-2), q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.nan_to_num(weights)  # rows with every key masked attend to nothing


@register_attention("sdpa")
def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """PyTorch's fused kernel (flash / memory-efficient / math, chosen by PyTorch).

    A ``bias`` goes in as a float ``attn_mask``: the bias where a key is allowed, -inf where
    the boolean or causal mask forbids it.
    """
    gqa = {} if scale is None else {"scale": scale}
    if k.size(1) != q.size(1):
        if SDPA_GQA:
            gqa["enable_gqa"] = True
        else:
            k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))  # (B, H, S, D)
    t, s = q.size(-2), k.size(-2)
    if is_causal and mask is None and bias is None and t == s:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, **gqa)
    mask = _combine(mask, is_causal, t, s, q.device)
    attn_mask = mask
    if bias is not None:
        bias = bias.to(q.dtype)
        attn_mask = bias if mask is None else torch.where(mask, bias, float("-inf"))  # (B|1, H|1, T, S)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, **gqa)
    if mask is not None and not SDPA_ZERO_MASKED_ROWS:
        y = y.masked_fill(~mask.any(-1, keepdim=True), 0.0)  # (B, H, T, D); NaN rows -> 0
    return y


class MultiHeadAttention(nn.Module):
    """Multi-head attention: self-attention with one fused QKV projection, or cross-attention.

    Self-attention (``cross=False``) projects x once into queries, keys and values:
    ``qkv`` has (H + 2 Hkv) D outputs, queries first, then keys, then values. With
    Hkv = H (the default) this is the (3C, C) projection of GPT-2 and BERT, with the same
    state-dict keys. ``n_kv_head`` < ``n_head`` gives grouped-query attention (n_kv_head = 1:
    multi-query).

    Cross-attention (``cross=True``, the encoder-decoder attention of Vaswani et al. 2017)
    takes queries from x through ``q`` and keys/values from a ``context`` (B, S, kv_dim)
    through ``kv`` (2 Hkv D outputs, keys first). It is never causal; ``mask`` is then the
    context's key padding mask, e.g. ``padding_mask(context_attention_mask)`` (B, 1, 1, S).

    ``head_dim`` sets D apart from C / H (T5 v1.1-small: 6 heads of 64 in a 512-wide model; the
    output projection is then (C, H D)); ``scale`` replaces 1 / sqrt(D) on the scores (T5: 1.0).

    ``rotary`` (optional, self-attention only) is applied to q and k after the head split,
    so any position scheme that acts on queries and keys (RoPE) plugs in here.
    ``causal=False`` with a padding mask is the bidirectional attention of encoders (BERT);
    ``causal`` defaults to True for self- and False for cross-attention. ``dropout``
    applies to the output projection and, unless ``attn_dropout`` is given, to the
    attention weights too (BERT configs set the two apart).
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        n_kv_head: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        backend: str = "sdpa",
        causal: bool | None = None,
        attn_dropout: float | None = None,
        cross: bool = False,
        kv_dim: int | None = None,
        head_dim: int | None = None,
        scale: float | None = None,
    ):
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if head_dim is None and dim % n_head:
            raise ValueError(f"model dim {dim} is not divisible by n_head {n_head}")
        if n_head % n_kv_head:
            raise ValueError(f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}")
        if backend not in ATTENTION:
            raise ValueError(f"unknown attention backend '{backend}'; choose from {sorted(ATTENTION)}")
        if cross and causal:
            raise ValueError("cross-attention is not causal: its keys are a context, not the past")
        if kv_dim is not None and not cross:
            raise ValueError("kv_dim is the context width of cross-attention: set cross=True")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, head_dim or dim // n_head
        q_out, kv_out = n_head * self.head_dim, n_kv_head * self.head_dim
        self.cross = cross
        if cross:
            self.q = Linear(dim, q_out, bias=bias)
            self.kv = Linear(kv_dim or dim, 2 * kv_out, bias=bias)
        else:
            self.qkv = Linear(dim, q_out + 2 * kv_out, bias=bias)
        self.proj = Linear(q_out, dim, bias=bias)
        self.scale = {} if scale is None else {"scale": scale}  # passed to the backend only when set
        self.dropout = dropout if attn_dropout is None else attn_dropout  # on the attention weights
        self.resid_dropout = nn.Dropout(dropout)
        self.attend = ATTENTION[backend]
        self.causal = (not cross) if causal is None else causal

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        rotary: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        context: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C). ``mask``: boolean, broadcastable to (B, H, T, S), True = may attend.
        ``bias``: float, broadcastable to (B, H, T, S), added to the scores.

        Self-attention with a ``cache`` stores the new keys/values at each row's next
        positions and attends over everything cached so far (S = cached + T).
        Cross-attention with a ``cache`` projects ``context`` (B, S, kv_dim) on the first
        call and reuses those keys/values afterwards (``context`` may then be omitted)."""
        B, T, C = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        if self.cross:
            q = self.q(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            k, v = self._context_kv(context, cache, layer)  # (B, Hkv, S, D)
        else:
            if context is not None:
                raise ValueError("self-attention takes no context: build the module with cross=True")
            q, k, v = self.qkv(x).split((H * D, Hkv * D, Hkv * D), dim=2)
            q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            k = k.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
            v = v.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
            if rotary is not None:
                q, k = rotary(q), rotary(k)
            if cache is not None:
                k, v = cache.append(layer, k, v)  # (B, Hkv, S, D)
        p = self.dropout if self.training else 0.0
        causal = self.causal and T > 1  # one new query may see every cached key
        y = self.attend(q, k, v, mask=mask, is_causal=causal, dropout_p=p, bias=bias, **self.scale)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, H * D)  # (B, T, H D)
        return self.resid_dropout(self.proj(y))

    def _context_kv(
        self, context: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if cache is not None and layer in cache.cross:
            return cache.cross[layer]
        if context is None:
            raise ValueError("cross-attention needs a context (B, S, kv_dim) on its first call")
        B, S, _ = context.shape
        kv = self.kv(context).view(B, S, 2, self.n_kv_head, self.head_dim)  # (B, S, 2, Hkv, D)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, Hkv, S, D) each
        if cache is not None:
            cache.set_cross(layer, k, v)
        return k, v
