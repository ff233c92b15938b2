"""Key/value cache for autoregressive decoding.

Axes: L layers, B batch, H heads, S cache positions, D head dim.

Keys and values of every layer live in two tensors of shape (L, B, H, S_max, D),
allocated once for the longest sequence a generation can reach. Each decoding step
writes its new keys/values into the next free positions and attends over the filled
prefix: no per-step allocation, concatenation or copy of the past.
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
        shape = (n_layer, batch, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # positions filled, the same for every row (prompts are left-padded)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) at the next T positions; return all keys/values so far (B, H, S, D)."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions as filled (the model calls this once all layers appended)."""
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Select rows (beam search: keep the surviving beams' histories)."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)

    def reset(self) -> None:
        self.length = 0

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2
