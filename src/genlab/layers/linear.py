"""A linear layer that decodes fast.

Decoding multiplies each weight matrix by the few rows of the tokens being generated, so its
speed is the speed of reading the weights from memory and of the BLAS's small-matrix kernels,
and both depend on how the weight is laid out. :class:`Linear` is an ``nn.Linear`` (same
parameters, same state dict) that :func:`prepare_decode` gives two copies of its weight, used
when no gradient is needed:

- one row (``genlab sample``, one stream of a server): the weight transposed to (in, out), as
  x @ W. On CPUs the BLAS streams that layout markedly faster than the (out, in) matrix
  nn.Linear keeps (measured on the 2-core test machine with weights larger than the caches:
  ~20 GB/s vs ~13 GB/s for 768 -> 2304/3072 layers, 26 vs 15 GB/s for GPT-2's 768 -> 50257
  output head). GPT-2's original Conv1D layers store (in, out) for the same reason.
- 2 to ``PACKED_ROWS`` rows (a batch of streams, beam search): the weight in oneDNN's blocked
  layout (``torch.ops.mkldnn._reorder_linear_weight``, the packing torch.compile's CPU backend
  uses), multiplied by oneDNN. MKL's small-M fp32 GEMM runs GPT-2's output head at 10-15 GFLOP/s
  for 4-64 rows; the packed weight about doubles that (AMD EPYC, one thread: 16 x 768 -> 50257 in
  41 ms vs 70-80 ms; 768 -> 3072 in 2.6 vs 4.6 ms). Only for float32 weights on a CPU with
  oneDNN; elsewhere these rows take the transposed copy (up to ``DECODE_ROWS``) or nn.Linear.

Both copies record the weight's version counter and the count of optimizer steps taken in the
process, and are ignored as soon as either moves: ``load_state_dict`` and in-place updates bump
the version, but PyTorch's fused AdamW updates parameters without bumping it, so an optimizer
step anywhere (a global step hook) also retires every copy. More rows than that (prefill,
training) take nn.Linear's path, the reference every fast path is tested against.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

DECODE_ROWS = 16  # at most this many rows may use the transposed copy (when there is no packed one)
PACKED_ROWS = 64  # 2..PACKED_ROWS rows use the oneDNN-packed copy


def _onednn() -> bool:
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return (
            torch.backends.mkldnn.is_available()
            and ops is not None
            and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise")
        )
    except (AttributeError, RuntimeError):
        return False


ONEDNN = _onednn()

_optimizer_steps = 0  # optimizer steps taken in this process (any optimizer): copies older than a step are stale


def _count_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_step)


class Linear(nn.Linear):
    decode_weight: torch.Tensor | None = None  # (in, out): the one-row layout
    packed_weight: torch.Tensor | None = None  # oneDNN's blocked layout of (out, in)
    _decode_version: int = -1
    _decode_steps: int = -1  # _optimizer_steps when the copies were made

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.decode_weight is not None or self.packed_weight is not None) and self._fresh(x):
            n = x.numel() // x.size(-1)  # rows
            rows = x.reshape(n, x.size(-1))  # (N, in)
            if n == 1 or self.packed_weight is None:
                wt = self.decode_weight
                if wt is not None and n <= DECODE_ROWS:
                    y = torch.addmm(self.bias, rows, wt) if self.bias is not None else rows @ wt  # (N, out)
                    return y.view(*x.shape[:-1], wt.size(1))
            elif n <= PACKED_ROWS:
                y = torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight, self.bias, "none", [], "")
                return y.view(*x.shape[:-1], self.out_features)  # (..., out)
        return F.linear(x, self.weight, self.bias)

    def _fresh(self, x: torch.Tensor) -> bool:
        """The copies may stand in for the weight: unchanged since made, no gradient wanted, same dtype."""
        return (
            self._decode_version == self.weight._version
            and self._decode_steps == _optimizer_steps
            and not (torch.is_grad_enabled() and self.weight.requires_grad)
            and x.dtype == self.weight.dtype
            and x.device == self.weight.device
        )


def prepare_decode(model: nn.Module, packed: bool = True) -> int:
    """Give every :class:`Linear` its decoding copies (module docstring): the transposed one where
    it profits (out_features >= in_features), the oneDNN-packed one (``packed`` and a float32 CPU
    weight, oneDNN present) for every layer. Returns the bytes this costs. Idempotent. A weight
    that is not a plain tensor (a shard of an FSDP-sharded model, whose full weight exists only
    inside a forward) gets none."""
    total, done = 0, set()
    for layer in model.modules():
        if not isinstance(layer, Linear) or type(layer.weight.data) is not torch.Tensor:
            continue
        w = layer.weight
        has_copies = layer.decode_weight is not None or layer.packed_weight is not None
        if id(w) in done or (has_copies and layer._decode_version == w._version
                             and layer._decode_steps == _optimizer_steps):  # fmt: skip
            continue
        done.add(id(w))
        layer.decode_weight = layer.packed_weight = None
        with torch.no_grad():
            if layer.out_features >= layer.in_features:
                layer.decode_weight = w.detach().t().contiguous()  # (in, out)
                total += layer.decode_weight.numel() * layer.decode_weight.element_size()
            if packed and ONEDNN and w.dtype == torch.float32 and w.device.type == "cpu":
                layer.packed_weight = torch.ops.mkldnn._reorder_linear_weight(w.detach(), DECODE_ROWS)
                total += w.numel() * w.element_size()
        layer._decode_version, layer._decode_steps = w._version, _optimizer_steps
    return total


def release_decode(model: nn.Module) -> None:
    """Drop the decoding copies (frees their memory)."""
    for layer in model.modules():
        if isinstance(layer, Linear):
            layer.decode_weight = layer.packed_weight = None
