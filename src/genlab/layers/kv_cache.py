"""Key/value cache for autoregressive decoding.

Axes: L layers, B batch (rows), H key/value heads, S cache positions, D head dim.

Keys and values of every layer live in two tensors of shape (L, B, H, S_max, D),
allocated once for the longest sequence a generation can reach. Each decoding step
writes its new keys/values into the next free positions and attends over the filled
prefix: no per-step allocation, concatenation or copy of the past. With grouped-query
attention H is the number of key/value heads, so the cache shrinks by n_head / n_kv_head.

Each row has its own length (``lengths``, (B,)). In the common case every row has the
same length (one batch of left-padded prompts decoded together): the cache is *uniform*,
``length`` is that shared length, and a step writes and reads plain slices. A server that
runs requests of different lengths in one batch (continuous batching) frees a finished
row with :meth:`reset_rows` and prefills a new request there, or copies one in with
:meth:`write_rows`; each row then writes at its own length, and :meth:`key_mask` hides
the keys past each row's end. ``length`` is then the longest row.

Cross-attention (encoder-decoder models) keeps the keys/values of its context in
``cross``, one (k, v) pair per layer, computed once at the first decoding step.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        shape = (n_layer, batch, n_head, max_len, head_dim)  # n_head: key/value heads
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)  # (B,) positions filled per row
        self.length = 0  # the longest row (every row, while uniform); a Python int: no device sync
        self.uniform = True  # every row has the same length
        self.cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> context k, v (B, H, S_ctx, D)

    @property
    def batch(self) -> int:
        return self.k.size(1)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) at each row's next T positions; return all keys/values so far
        (B, H, S, D), S = length + T. Rows shorter than S hold stale keys at their end:
        mask them with :meth:`key_mask`."""
        T = k.size(2)
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested")
        if self.uniform:
            self.k[layer, :, :, self.length : end] = k
            self.v[layer, :, :, self.length : end] = v
        else:
            rows = torch.arange(self.batch, device=k.device)[:, None]  # (B, 1)
            cols = self.lengths[:, None] + torch.arange(T, device=k.device)  # (B, T)
            self.k[layer, rows, :, cols] = k.transpose(1, 2)  # indexed view (B, T, H, D)
            self.v[layer, rows, :, cols] = v.transpose(1, 2)
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions of every row as filled (the model calls this once all layers appended)."""
        self.lengths += n
        self.length += n

    def positions(self, t: int) -> torch.Tensor:
        """Cache positions of the next t tokens of each row: (B, t)."""
        return self.lengths[:, None] + torch.arange(t, device=self.lengths.device)  # (B, t)

    def key_mask(self, t: int) -> torch.Tensor | None:
        """Boolean (B, 1, t, S) mask, S = length + t, for the next t queries of each row: query i
        of row b sees the keys at positions <= lengths[b] + i (its past and itself, never the
        stale positions past its end). None while the cache is uniform (nothing to hide)."""
        if self.uniform:
            return None
        keys = torch.arange(self.length + t, device=self.lengths.device)  # (S,)
        return (keys[None, None, :] <= self.positions(t)[:, :, None])[:, None]  # (B, 1, t, S)

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Select rows (beam search: keep the surviving beams' histories). ``cross=False`` leaves
        the cross-attention keys/values alone: right when ``index`` only moves rows among copies
        of one context (the beams of one source sentence), whose context rows are equal."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        self.lengths = self.lengths.index_select(0, index)
        if cross:
            self.cross = {i: (k.index_select(0, index), v.index_select(0, index)) for i, (k, v) in self.cross.items()}
        if not self.uniform:
            self._sync()

    def repeat_rows(self, n: int) -> None:
        """Copy each row into n consecutive rows (B -> B n): prefill a prompt once, then sample
        n continuations of it. Row r becomes rows r n .. r n + n - 1."""
        if n == 1:
            return
        self.k = self.k.repeat_interleave(n, dim=1)  # (L, B n, H, S_max, D)
        self.v = self.v.repeat_interleave(n, dim=1)
        self.lengths = self.lengths.repeat_interleave(n)  # (B n,)
        self.cross = {i: (k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for i, (k, v) in self.cross.items()}

    def reset(self) -> None:
        """Empty every row."""
        self.lengths.zero_()
        self.length, self.uniform = 0, True
        self.cross = {}

    def reset_rows(self, rows: torch.Tensor | list[int]) -> None:
        """Empty the given rows (a finished request's rows, to be filled by a new one)."""
        if self.cross:
            raise ValueError("cross-attention keys/values are per batch: reset() the cache instead of single rows")
        self.lengths[torch.as_tensor(rows, dtype=torch.long, device=self.lengths.device)] = 0
        self._sync()

    def write_rows(self, rows: torch.Tensor | list[int], src: KVCache) -> None:
        """Copy every row of ``src`` (a cache with len(rows) rows, e.g. one prefilled prompt)
        into the given rows of this cache, lengths included."""
        if self.cross or src.cross:
            raise ValueError("cross-attention keys/values are per batch: rows cannot be copied between caches")
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.lengths.device)
        if src.batch != rows.numel() or src.k.shape[::2] != self.k.shape[::2] or src.length > self.max_len:
            raise ValueError(f"cannot write a cache of shape {tuple(src.k.shape)} into rows of {tuple(self.k.shape)}")
        n = src.length
        self.k[:, rows, :, :n] = src.k[:, :, :, :n]
        self.v[:, rows, :, :n] = src.v[:, :, :, :n]
        self.lengths[rows] = src.lengths.to(self.lengths.device)
        self._sync()

    def _sync(self) -> None:
        """Recompute ``length`` and ``uniform`` from ``lengths`` (reads them from the device)."""
        lo, hi = int(self.lengths.min()), int(self.lengths.max())
        self.length, self.uniform = hi, lo == hi

    def set_cross(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep a layer's cross-attention keys/values (B, H, S_ctx, D) for later decoding steps."""
        self.cross[layer] = (k, v)

    @property
    def nbytes(self) -> int:
        own = self.k.numel() * self.k.element_size() * 2
        return own + sum(k.numel() * k.element_size() * 2 for k, _ in self.cross.values())
