"""Reformer's LSH attention: shared query-key, random-rotation hashing, sorted chunks.

Kitaev, Kaiser & Levskaya 2020, "Reformer: The Efficient Transformer", arXiv:2001.04451.

Axes: B batch, H heads, T time (padded to Tp, a multiple of c), D head dim, C model dim,
R hash rounds, n chunks per round, c chunk length, L keys per chunk (2c, or c with one chunk).

Shared query-key attention (section 2): one projection gives the queries q_i, and the keys
are the same vectors normalised, k_j = q_j / ||q_j||, so that a query is most similar to
itself; a query does not attend to itself unless nothing else is available (its score is
replaced by -1e5). Scores are q_i . k_j (the keys are unit vectors, as in the reference code).

Angular LSH (section 3, Andoni et al. 2015): for each round r a random matrix R_r (D, b/2) and

    h_r(x) = argmax([x R_r ; -x R_r])                  b buckets (b even; b = 1 hashes nothing)

Each round sorts the positions by (bucket, position), cuts the sorted order into chunks of c,
and lets every query attend to the keys of its own chunk and of the chunk before it (wrapping
around), under the causal and padding masks. A key that falls in a query's chunks in c_ij of
the R rounds has its score lowered by log c_ij, so that it is counted once overall; each round
gives an output o_r and the log-sum-exp z_r of its scores, and the rounds are combined as

    o_i = sum_r exp(z_r,i - logsumexp_r z_r,i) o_r,i

which is attention over the union of the keys each query met in any round. With one bucket
and c = T that union is every key: :func:`shared_qk_attention`, the dense reference, exactly.
Memory O(R T c), time O(R T c D) plus the sorts.

Causal masking keeps every later value out of a query's output, but the sorted order, and so
which earlier keys share a query's chunks, depends on the buckets of every position, later ones
included: a causal LSH language model sees a trace of its future through the chunk boundaries
(a property of Reformer's scheme, not removed here).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.layers.linear import Linear

SELF_SCORE = -1e5  # a query's score for itself: used only when no other key is available


def _acc(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def shared_qk_attention(
    qk: torch.Tensor, v: torch.Tensor, causal: bool = False, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Dense reference: qk, v (B, H, T, D) -> (B, H, T, D), keys = normalised qk, self masked unless alone."""
    T = qk.size(-2)
    k = F.normalize(qk, dim=-1)
    scores = _acc(qk @ k.transpose(-1, -2))  # (B, H, T, T)
    eye = torch.eye(T, dtype=torch.bool, device=qk.device)
    scores = scores.masked_fill(eye, SELF_SCORE)
    allowed = torch.ones(T, T, dtype=torch.bool, device=qk.device)
    if causal:
        allowed = allowed.tril()
    if key_mask is not None:
        allowed = allowed & key_mask.bool()[:, None, None, :]  # (B, 1, T, T)
    scores = scores.masked_fill(~(allowed | eye), float("-inf"))
    return torch.softmax(scores, dim=-1).to(v.dtype) @ v


def hash_buckets(x: torch.Tensor, n_buckets: int, rotations: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D), rotations (H, D, R, b/2) -> bucket ids (B, H, R, T) in [0, b)."""
    if n_buckets == 1:
        return x.new_zeros(x.shape[:2] + (rotations.size(2), x.size(2)), dtype=torch.long)
    rot = torch.einsum("bhtd,hdrk->bhrtk", x, rotations.to(x.dtype))  # (B, H, R, T, b/2)
    return torch.cat([rot, -rot], dim=-1).argmax(dim=-1)  # (B, H, R, T)


def random_rotations(n_head: int, dim: int, n_rounds: int, n_buckets: int, generator=None, device=None) -> torch.Tensor:
    """(H, D, R, b/2) Gaussian rotations, one set per head and round."""
    if n_buckets != 1 and n_buckets % 2:
        raise ValueError(f"lsh buckets come in +/- pairs (argmax over [xR; -xR]): use an even count, got {n_buckets}")
    return torch.randn(n_head, dim, n_rounds, max(1, n_buckets // 2), generator=generator, device=device)


def lsh_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    n_buckets: int,
    n_rounds: int,
    chunk: int,
    *,
    causal: bool = False,
    key_mask: torch.Tensor | None = None,
    rotations: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """LSH attention (module docstring). qk, v: (B, H, T, D); key_mask (B, T) bool -> (B, H, T, D)."""
    B, H, T, D = qk.shape
    if n_buckets < 1 or n_rounds < 1 or chunk < 1:
        raise ValueError(f"lsh needs buckets, rounds and chunk >= 1, got {n_buckets}, {n_rounds}, {chunk}")
    if rotations is None:
        rotations = random_rotations(H, D, n_rounds, n_buckets, generator=generator, device=qk.device)
    R = rotations.size(2)
    c = min(chunk, T)
    Tp = T + (-T % c)
    n = Tp // c
    ok = torch.ones(B, T, dtype=torch.bool, device=qk.device) if key_mask is None else key_mask.bool()
    qk, v = F.pad(qk, (0, 0, 0, Tp - T)), F.pad(v, (0, 0, 0, Tp - T))  # (B, H, Tp, D)
    ok = F.pad(ok, (0, Tp - T), value=False)  # (B, Tp)

    buckets = hash_buckets(qk, n_buckets, rotations)  # (B, H, R, Tp)
    buckets[..., T:] = n_buckets  # padding sorts to the end
    pos = torch.arange(Tp, device=qk.device)
    order = torch.argsort(buckets * Tp + pos, dim=-1)  # (B, H, R, Tp): sorted slot -> position
    slot = torch.argsort(order, dim=-1)  # (B, H, R, Tp): position -> sorted slot
    cid = slot // c  # (B, H, R, Tp): the chunk of each position in each round

    def sort(x):  # (B, H, Tp, D) -> (B, H, R, n, c, D)
        idx = order[..., None].expand(B, H, R, Tp, x.size(-1))
        return torch.gather(x[:, :, None].expand(B, H, R, Tp, x.size(-1)), 3, idx).view(B, H, R, n, c, -1)

    def around(x):  # (B, H, R, n, c, ...) -> (B, H, R, n, L, ...): own chunk, then the one before
        return x if n == 1 else torch.cat([x, x.roll(1, dims=3)], dim=4)

    q = sort(qk)  # (B, H, R, n, c, D)
    k = around(F.normalize(q, dim=-1))  # (B, H, R, n, L, D)
    vs = around(sort(v))  # (B, H, R, n, L, D)
    pq = order.view(B, H, R, n, c)  # position of each sorted query
    pk = around(pq)  # (B, H, R, n, L)
    scores = _acc(q @ k.transpose(-1, -2))  # (B, H, R, n, c, L)

    okk = torch.gather(ok[:, None, None, :].expand(B, H, R, Tp), 3, pk.reshape(B, H, R, -1)).view(pk.shape)
    allowed = okk[..., None, :].expand(scores.shape)  # (B, H, R, n, c, L)
    if causal:
        allowed = allowed & (pk[..., None, :] <= pq[..., :, None])
    same = pk[..., None, :] == pq[..., :, None]  # (B, H, R, n, c, L)
    scores = scores.masked_fill(same, SELF_SCORE).masked_fill(~allowed & ~same, float("-inf"))

    if R > 1:  # count each key once over the rounds: c_ij = rounds in which j sits in i's chunks
        cid_t = cid.to(torch.int16 if n < 2**14 else torch.int32).permute(0, 1, 3, 2)  # (B, H, Tp, R)
        count = torch.zeros(scores.shape, dtype=torch.uint8, device=qk.device)
        flat_q, flat_k = pq.reshape(B, H, -1), pk.reshape(B, H, -1)
        for r in range(R):
            cq = torch.gather(cid_t[..., r], 2, flat_q).view(pq.shape)  # (B, H, R, n, c)
            ck = torch.gather(cid_t[..., r], 2, flat_k).view(pk.shape)  # (B, H, R, n, L)
            gap = cq[..., :, None] - ck[..., None, :]  # (B, H, R, n, c, L): same chunk 0, the one before 1 or 1 - n
            count += (gap == 0) | (((gap == 1) | (gap == 1 - n)) & (n > 1))
        scores = scores - count.clamp(min=1).to(scores.dtype).log()

    lse = torch.logsumexp(scores, dim=-1)  # (B, H, R, n, c)
    weights = torch.exp(scores - lse[..., None]).nan_to_num(0.0).to(v.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = (weights @ vs).view(B, H, R, Tp, D)  # (B, H, R, Tp, D), sorted order
    out = torch.gather(out, 3, slot[..., None].expand(B, H, R, Tp, D))  # (B, H, R, Tp, D), positions
    lse = torch.gather(lse.view(B, H, R, Tp), 3, slot)  # (B, H, R, Tp)
    share = torch.softmax(lse, dim=2).nan_to_num(0.0).to(v.dtype)  # (B, H, R, Tp)
    return (share[..., None] * out).sum(2)[:, :, :T]  # (B, H, T, D)


class LSHAttention(nn.Module):
    """Reformer self-attention: ``qk`` (shared query-key) and ``v`` projections, ``proj`` out.

    ``seed`` fixes the random rotations (the same hashing at every call); without it each call
    draws fresh rotations from the global RNG, as Reformer does in training.
    """

    def __init__(
        self,
        dim: int,
        n_head: int,
        *,
        n_buckets: int = 32,
        n_rounds: int = 4,
        chunk: int = 64,
        causal: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        if dim % n_head:
            raise ValueError(f"model dim {dim} is not divisible by n_head {n_head}")
        random_rotations(1, 1, 1, n_buckets)  # validates the bucket count
        if n_rounds < 1 or chunk < 1:
            raise ValueError(f"lsh needs rounds and chunk >= 1, got {n_rounds}, {chunk}")
        self.n_head, self.head_dim = n_head, dim // n_head
        self.n_buckets, self.n_rounds, self.chunk, self.causal, self.seed = n_buckets, n_rounds, chunk, causal, seed
        self.qk = Linear(dim, dim, bias=bias)
        self.v = Linear(dim, dim, bias=bias)
        self.proj = Linear(dim, dim, bias=bias)
        self.dropout = dropout if attn_dropout is None else attn_dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, rotary=None, cache=None, layer: int = 0, bias=None, **_
    ):
        """x (B, T, C) -> (B, T, C); ``mask``: key padding mask broadcastable to (B, 1, 1, S).

        With a KV cache (causal decoding) the cache holds the shared query-keys and the values;
        each call hashes and sorts the whole cached sequence again and keeps its last T rows:
        what a forward over the sequence so far gives them (with the same rotations), at
        O(S c R) per call. (In a deeper model the cached keys of later layers are the states
        positions had when they were decoded, which a longer forward computes a little
        differently: the chunk-boundary effect of the module docstring.) A decoding mask
        (B, 1, T, S) is read as its last row's key mask."""
        if bias is not None:
            raise ValueError("lsh attention takes no dense additive bias (pos=alibi): use pos=rope or learned")
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        qk = self.qk(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = self.v(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        if rotary is not None:
            qk = rotary(qk)
        if cache is not None:
            if not self.causal or not cache.uniform:
                raise ValueError("lsh decoding needs a causal model and a uniform KV cache (rows of one length)")
            qk, v = cache.append(layer, qk, v)  # (B, H, S, D)
        S = qk.size(2)
        key_mask = None
        if mask is not None:
            if mask.dim() != 4 or (mask.size(-2) != 1 and cache is None):
                raise ValueError("lsh attention takes a key padding mask (B, 1, 1, T), not a full mask")
            key_mask = mask[:, 0, -1, :].expand(B, S)
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
        rotations = random_rotations(H, D, self.n_rounds, self.n_buckets, generator=gen, device=x.device)
        p = self.dropout if self.training else 0.0
        y = lsh_attention(
            qk, v, self.n_buckets, self.n_rounds, self.chunk,
            causal=self.causal, key_mask=key_mask, rotations=rotations, dropout_p=p,
        )  # fmt: skip
        y = y[:, :, S - T :]  # (B, H, T, D): the new positions
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))
