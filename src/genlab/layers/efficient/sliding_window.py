"""Longformer attention: a sliding window, optional dilation, and global tokens.

Beltagy, Peters & Cohan 2020, "Longformer: The Long-Document Transformer", arXiv:2004.05150.

Axes: B batch, H heads, T time, D head dim, C model dim, n chunks, c chunk length,
L keys per chunk (c + before + after), G global tokens per row (the most in the batch).

Which keys query i may see (``window`` = w, ``dilation`` = d):

    bidirectional   j = i + m d,  |m| <= w / 2      Longformer's ``attention_window`` w: w / 2 each side
    causal          j = i - m d,  0 <= m <= w       the window looks back w steps (w + 1 keys, itself included)

Global tokens (Longformer section 3.1) are symmetric: a global token attends to every key, and
every query attends to every global token (in a causal model only those at or before it). A
global key inside a query's window is counted once. As in the paper (and Hugging Face's
``LongformerSelfAttention``), global rows may use their own projections Q_g, K_g, V_g: then

    local query i   softmax over {window keys that are not global} u {global keys}, with Q, K, V
    global query g  softmax over every key, with Q_g, K_g, V_g

The window is computed in chunks of c queries, each against the L = c + before + after keys
around it: scores take O(T L) memory, never a T x T mask or score matrix. Dilation d splits the
sequence into d interleaved sub-sequences (positions r, r + d, r + 2d, ...): a dilated window
is an undilated one on each of them. The window part and the global part are softmax-normalised
separately and merged by their log-sum-exp, which equals one softmax over their union:

    out = (e^{lse_w} out_w + e^{lse_g} out_g) / (e^{lse_w} + e^{lse_g})

:func:`dense_sliding_window_attention` computes the same from a dense (T, T) mask through the
eager backend: the reference the chunked path is tested against.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.layers.attention import eager_attention, repeat_kv, sdpa_attention
from genlab.layers.kv_cache import KVCache
from genlab.layers.linear import Linear


def window_extent(window: int, causal: bool) -> tuple[int, int]:
    """(steps before, steps after) a query may look, in units of the dilation."""
    if window < 1:
        raise ValueError(f"attention window must be at least 1, got {window}")
    if causal:
        return window, 0
    if window % 2:
        raise ValueError(f"a bidirectional attention window is w/2 on each side: it must be even, got {window}")
    return window // 2, window // 2


def _acc(x: torch.Tensor) -> torch.Tensor:
    """Softmax arithmetic in at least fp32 (half-precision scores are upcast)."""
    return x if x.dtype == torch.float64 else x.float()


def _band(q, k, v, key_ok, before: int, after: int, chunk: int, dropout_p: float, need_lse: bool = True):
    """Banded attention in chunks. q, k, v: (N, H, T, D); key_ok: (N, 1|H, T) bool, or None (all real).

    Query i sees key j when -before <= j - i <= after and key_ok[j]. Returns the output
    (N, H, T, D) and the log-sum-exp of each row's scores (N, H, T), -inf for a row with no key;
    without ``need_lse`` the chunks go through the fused SDPA kernel and the lse is None.
    """
    N, H, T, D = q.shape
    c = max(1, min(chunk, T))
    n = math.ceil(T / c)
    pad = n * c - T
    L = c + before + after
    dev = q.device
    qc = F.pad(q, (0, 0, 0, pad)).view(N, H, n, c, D)  # (N, H, n, c, D)
    kp = F.pad(k, (0, 0, before, pad + after))  # (N, H, before + n c + after, D)
    vp = F.pad(v, (0, 0, before, pad + after))
    kw = kp.unfold(2, L, c).transpose(-1, -2)  # (N, H, n, L, D)
    vw = vp.unfold(2, L, c).transpose(-1, -2)  # (N, H, n, L, D)
    # Key slot l of chunk m holds position m c - before + l; query row r is position m c + r.
    rel = torch.arange(L, device=dev)[None, :] - before - torch.arange(c, device=dev)[:, None]  # (c, L)
    band = (rel >= -before) & (rel <= after)  # (c, L)
    if key_ok is None:
        pos = torch.arange(n, device=dev)[:, None] * c - before + torch.arange(L, device=dev)[None, :]  # (n, L)
        allowed = band & ((pos >= 0) & (pos < T))[:, None, :]  # (n, c, L)
    else:
        okw = F.pad(key_ok, (before, pad + after), value=False).unfold(-1, L, c)  # (N, 1|H, n, L)
        allowed = band & okw[..., None, :]  # (N, 1|H, n, c, L)
    if not need_lse:
        mask = allowed if key_ok is None else allowed.expand(N, H, n, c, L).reshape(N * H, n, c, L)
        flat = [t.reshape(N * H, n, -1, D) for t in (qc, kw, vw)]  # (N H, n, c|L, D)
        out = sdpa_attention(*flat, mask=mask, dropout_p=dropout_p)  # (N H, n, c, D)
        return out.reshape(N, H, n * c, D)[:, :, :T], None
    scores = (qc @ kw.transpose(-1, -2)) / math.sqrt(D)  # (N, H, n, c, L)
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(_acc(scores), dim=-1)  # (N, H, n, c)
    weights = torch.exp(_acc(scores) - lse[..., None]).nan_to_num(0.0).to(q.dtype)  # rows with no key -> 0
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = weights @ vw  # (N, H, n, c, D)
    out = out.reshape(N, H, n * c, D)[:, :, :T]  # (N, H, T, D)
    return out, lse.reshape(N, H, n * c)[:, :, :T]


def window_attention(
    q, k, v, key_ok, before: int, after: int, dilation: int = 1, chunk: int = 0, dropout_p=0.0, need_lse=True
):
    """The window part, dilated: q, k, v (B, H, T, D), key_ok (B, 1|H, T) or None -> ((B, H, T, D),
    lse (B, H, T) or None without ``need_lse``)."""
    B, H, T, D = q.shape
    chunk = chunk or max(before, after, 1)
    if dilation == 1:
        return _band(q, k, v, key_ok, before, after, chunk, dropout_p, need_lse)
    d = dilation
    Tp = T + (-T % d)

    def fold(x, value=0.0):  # (B, h, T, D) -> (B d, h, Tp/d, D)
        x = F.pad(x, (0, 0, 0, Tp - T), value=value)
        x = x.view(x.size(0), x.size(1), Tp // d, d, x.size(-1))  # (B, h, T/d, d, D)
        return x.permute(0, 3, 1, 2, 4).reshape(-1, x.size(1), Tp // d, x.size(-1))  # (B d, h, T/d, D)

    if key_ok is None:
        key_ok = torch.ones(B, 1, T, dtype=torch.bool, device=q.device)
    ok = F.pad(key_ok, (0, Tp - T), value=False).view(B, key_ok.size(1), Tp // d, d)  # (B, h, T/d, d)
    ok = ok.permute(0, 3, 1, 2).reshape(B * d, key_ok.size(1), Tp // d)  # (B d, h, T/d)
    out, lse = _band(fold(q), fold(k), fold(v), ok, before, after, chunk, dropout_p, need_lse)  # (B d, H, T/d, D)
    out = out.view(B, d, H, Tp // d, D).permute(0, 2, 3, 1, 4).reshape(B, H, Tp, D)[:, :, :T]  # (B, H, T, D)
    if lse is not None:
        lse = lse.view(B, d, H, Tp // d).permute(0, 2, 3, 1).reshape(B, H, Tp)[:, :, :T]  # (B, H, T)
    return out, lse


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    *,
    causal: bool = False,
    dilation: int = 1,
    key_mask: torch.Tensor | None = None,
    global_mask: torch.Tensor | None = None,
    global_qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    dropout_p: float = 0.0,
    chunk: int = 0,
) -> torch.Tensor:
    """Longformer attention, chunked. q (B, H, T, D), k/v (B, Hkv, T, D) -> (B, H, T, D).

    ``key_mask`` (B, T) bool: real tokens (True) and padding. ``global_mask`` (B, T) bool: the
    global tokens. ``global_qkv``: the global rows' own (q_g, k_g, v_g), shaped like (q, k, v);
    without it the global rows use q, k, v. ``chunk``: queries per chunk (0: the window's
    one-sided extent). A query with no key to see returns 0.
    """
    B, H, T, D = q.shape
    if dilation < 1:
        raise ValueError(f"attention dilation must be at least 1, got {dilation}")
    before, after = window_extent(window, causal)
    k, v = repeat_kv(k, H), repeat_kv(v, H)  # (B, H, T, D)
    ok = torch.ones(B, T, dtype=torch.bool, device=q.device) if key_mask is None else key_mask.bool()
    if global_mask is None or not bool(global_mask.any()):
        ok_w = None if key_mask is None else ok[:, None]
        out, _ = window_attention(q, k, v, ok_w, before, after, dilation, chunk, dropout_p, need_lse=False)
        return out
    glob = global_mask.bool() & ok  # (B, T)
    out_w, lse_w = window_attention(q, k, v, (ok & ~glob)[:, None], before, after, dilation, chunk, dropout_p)

    # Every query against the G global keys (same projections as the window).
    G = int(glob.sum(1).max())
    idx = torch.sort(glob.int(), dim=1, descending=True, stable=True).indices[:, :G]  # (B, G) global positions first
    real = torch.gather(glob, 1, idx)  # (B, G): False where a row has fewer than G
    gather = idx[:, None, :, None].expand(B, H, G, D)
    kg, vg = torch.gather(k, 2, gather), torch.gather(v, 2, gather)  # (B, H, G, D)
    allowed = real[:, None, None, :]  # (B, 1, 1, G)
    if causal:
        allowed = allowed & (idx[:, None, None, :] <= torch.arange(T, device=q.device)[:, None])  # (B, 1, T, G)
    scores = (q @ kg.transpose(-1, -2)) / math.sqrt(D)  # (B, H, T, G)
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse_g = torch.logsumexp(_acc(scores), dim=-1)  # (B, H, T)
    weights = torch.exp(_acc(scores) - lse_g[..., None]).nan_to_num(0.0).to(q.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out_g = weights @ vg  # (B, H, T, D)
    lse = torch.logaddexp(lse_w, lse_g)  # (B, H, T)
    share_w = torch.exp(lse_w - lse).nan_to_num(0.0).to(q.dtype)[..., None]
    share_g = torch.exp(lse_g - lse).nan_to_num(0.0).to(q.dtype)[..., None]
    out = share_w * out_w + share_g * out_g  # (B, H, T, D)

    # Global queries against every key, with their own projections when given.
    gq, gk, gv = global_qkv if global_qkv is not None else (q, k, v)
    gk, gv = repeat_kv(gk, H), repeat_kv(gv, H)
    qg = torch.gather(gq, 2, gather)  # (B, H, G, D)
    mask = ok[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        mask = mask & (torch.arange(T, device=q.device) <= idx[:, None, :, None])  # (B, 1, G, T)
    y = eager_attention(qg, gk, gv, mask=mask, dropout_p=dropout_p)  # (B, H, G, D), O(G T)
    keep = real[:, None, :, None].expand(B, H, G, D)
    cur = torch.gather(out, 2, gather)
    return out.scatter(2, gather, torch.where(keep, y, cur))  # (B, H, T, D)


def sliding_window_mask(t: int, window: int, causal: bool = False, dilation: int = 1, device=None) -> torch.Tensor:
    """(T, T) boolean band: query i may see key j (the definition in the module docstring)."""
    before, after = window_extent(window, causal)
    rel = torch.arange(t, device=device)[None, :] - torch.arange(t, device=device)[:, None]  # (T, T): j - i
    return (rel >= -before * dilation) & (rel <= after * dilation) & (rel % dilation == 0)


def dense_sliding_window_attention(
    q, k, v, window: int, *, causal=False, dilation=1, key_mask=None, global_mask=None, global_qkv=None
) -> torch.Tensor:
    """Reference: the same attention from a dense (T, T) mask through the eager backend (O(T^2) memory)."""
    B, H, T, D = q.shape
    ok = torch.ones(B, T, dtype=torch.bool, device=q.device) if key_mask is None else key_mask.bool()
    glob = torch.zeros_like(ok) if global_mask is None else global_mask.bool() & ok
    band = sliding_window_mask(T, window, causal, dilation, q.device)  # (T, T)
    order = torch.ones(T, T, dtype=torch.bool, device=q.device).tril() if causal else torch.ones_like(band)
    local = (band & (ok & ~glob)[:, None, :]) | (glob[:, None, :] & order)  # (B, T, T)
    out = eager_attention(q, k, v, mask=local[:, None])  # (B, H, T, D)
    gq, gk, gv = global_qkv if global_qkv is not None else (q, k, v)
    full = eager_attention(gq, gk, gv, mask=(ok[:, None, :] & order)[:, None])  # (B, H, T, D)
    return torch.where(glob[:, None, :, None], full, out)


class LongformerAttention(nn.Module):
    """Self-attention with a sliding window and global tokens; a drop-in for MultiHeadAttention.

    ``qkv`` and ``proj`` are MultiHeadAttention's (same state-dict keys); ``global_projections``
    adds ``qkv_global``, the separate Q_g, K_g, V_g of the global rows (Longformer's
    query_global / key_global / value_global). ``mask`` must be a key padding mask broadcastable
    to (B, 1, 1, T); ``global_mask`` (B, T) marks the global tokens.

    With a KV cache (causal decoding) the new queries attend over the cached keys inside their
    window; the first call on an empty cache takes the chunked path.
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        window: int,
        *,
        causal: bool,
        dilation: int = 1,
        global_projections: bool = False,
        n_kv_head: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if dim % n_head or n_head % n_kv_head:
            raise ValueError(f"dim {dim}, n_head {n_head}, n_kv_head {n_kv_head} do not divide")
        window_extent(window, causal)  # validates
        if dilation < 1:
            raise ValueError(f"attention dilation must be at least 1, got {dilation}")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, dim // n_head
        self.window, self.dilation, self.causal = window, dilation, causal
        out = dim + 2 * n_kv_head * self.head_dim
        self.qkv = Linear(dim, out, bias=bias)
        self.qkv_global = Linear(dim, out, bias=bias) if global_projections else None
        self.proj = Linear(dim, dim, bias=bias)
        self.dropout = dropout if attn_dropout is None else attn_dropout
        self.resid_dropout = nn.Dropout(dropout)

    def _heads(self, lin: Linear, x: torch.Tensor, rotary):
        B, T, _ = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = lin(x).split((H * D, Hkv * D, Hkv * D), dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        rotary=None,
        cache: KVCache | None = None,
        layer: int = 0,
        bias: torch.Tensor | None = None,
        global_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        if bias is not None:
            raise ValueError("longformer attention takes no dense additive bias (pos=alibi): use pos=rope or learned")
        B, T, C = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = self._heads(self.qkv, x, rotary)
        if cache is not None:
            if not cache.uniform:
                raise ValueError("longformer decoding needs a uniform KV cache (rows of one length)")
            start = cache.length
            k, v = cache.append(layer, k, v)  # (B, Hkv, S, D)
            if start > 0 or mask is not None and mask.size(-2) > 1:
                if global_mask is not None:
                    raise ValueError("global tokens are not supported while decoding with a KV cache")
                y = self._cached(q, k, v, mask, start, p)
                return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))
        key_mask = None
        if mask is not None:
            if mask.dim() != 4 or mask.size(-2) != 1 or mask.size(1) != 1:
                raise ValueError("longformer attention takes a key padding mask (B, 1, 1, T), not a full mask")
            key_mask = mask[:, 0, 0, :].expand(B, T)  # (B, T)
        gqkv = None
        if self.qkv_global is not None and global_mask is not None and bool(global_mask.any()):
            gqkv = self._heads(self.qkv_global, x, rotary)
        y = sliding_window_attention(
            q, k, v, self.window, causal=self.causal, dilation=self.dilation,
            key_mask=key_mask, global_mask=global_mask, global_qkv=gqkv, dropout_p=p,
        )  # fmt: skip
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))

    def _cached(self, q, k, v, mask, start: int, dropout_p: float) -> torch.Tensor:
        """T new queries at positions start.. against the S cached keys in their window (dense on that slice)."""
        T, S = q.size(2), k.size(2)
        reach = self.window * self.dilation
        lo = max(0, start - reach)
        pos_q = torch.arange(start, start + T, device=q.device)[:, None]  # (T, 1)
        pos_k = torch.arange(lo, S, device=q.device)[None, :]  # (1, S - lo)
        back = pos_q - pos_k
        band = (back >= 0) & (back <= reach) & (back % self.dilation == 0)  # (T, S - lo)
        if mask is not None:
            band = band & mask[..., lo:]  # (B, 1, T, S - lo)
        return eager_attention(q, k[:, :, lo:], v[:, :, lo:], mask=band, dropout_p=dropout_p)  # (B, H, T, D)
