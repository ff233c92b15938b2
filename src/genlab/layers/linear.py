"""A linear layer that decodes fast.

Decoding one token at a time multiplies each weight matrix by a single vector, so its speed
is the speed of reading the weights from memory. On CPUs the BLAS streams a matrix stored
(in, out), as x @ W, markedly faster than the (out, in) matrix nn.Linear keeps (measured on
the 2-core test machine with weights larger than the caches: ~20 GB/s vs ~13 GB/s for
768 -> 2304/3072 layers, 26 vs 15 GB/s for GPT-2's 768 -> 50257 output head). GPT-2's
original Conv1D layers store (in, out) for the same reason.

:class:`Linear` is an ``nn.Linear`` (same parameters, same state dict) that, once
:func:`prepare_decode` has made a transposed copy of its weight, uses the copy for inputs
of a few rows when no gradient is needed. The copy records the weight's version counter
and is ignored as soon as the weight changes (an optimizer step, ``load_state_dict``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

DECODE_ROWS = 16  # inputs with at most this many rows use the transposed copy


class Linear(nn.Linear):
    decode_weight: torch.Tensor | None = None
    _decode_version: int = -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wt = self.decode_weight
        if (
            wt is not None
            and x.numel() <= DECODE_ROWS * x.size(-1)
            and self._decode_version == self.weight._version
            and not (torch.is_grad_enabled() and self.weight.requires_grad)
            and x.dtype == wt.dtype
        ):
            rows = x.reshape(-1, x.size(-1))  # (N, in)
            y = torch.addmm(self.bias, rows, wt) if self.bias is not None else rows @ wt  # (N, out)
            return y.view(*x.shape[:-1], wt.size(1))
        return F.linear(x, self.weight, self.bias)


def prepare_decode(model: nn.Module) -> int:
    """Give every :class:`Linear` that profits (out_features >= in_features) a transposed
    copy of its weight; returns the bytes this costs. Idempotent. A weight that is not a plain
    tensor (a shard of an FSDP-sharded model, whose full weight exists only inside a forward) gets none."""
    total, done = 0, set()
    for layer in model.modules():
        if not isinstance(layer, Linear) or layer.out_features < layer.in_features:
            continue
        if type(layer.weight.data) is not torch.Tensor:
            continue
        if layer.decode_weight is not None and layer._decode_version == layer.weight._version:
            continue
        if id(layer.weight) in done:
            continue
        done.add(id(layer.weight))
        with torch.no_grad():
            layer.decode_weight = layer.weight.detach().t().contiguous()  # (in, out)
        layer._decode_version = layer.weight._version
        total += layer.decode_weight.numel() * layer.decode_weight.element_size()
    return total


def release_decode(model: nn.Module) -> None:
    """Drop the transposed copies (frees their memory)."""
    for layer in model.modules():
        if isinstance(layer, Linear):
            layer.decode_weight = None
