"""FLOPs and model FLOPs utilisation (MFU), measured the same way for every task.

    MFU = (FLOPs per item x items trained) / (training seconds x peak FLOP/s)

(Chowdhery et al. 2022, PaLM, appendix B: the FLOPs the model needs, not the FLOPs the hardware
spent on recomputation.) An item is what the trainer counts: a token (padding included) or an image.

- FLOPs per item: one training step's forward and backward on a reference batch, counted by
  ``torch.utils.flop_counter`` (matmuls, convolutions, attention), divided by the batch's items.
  The count leaves the models as they were: RNG, gradients and buffers (batch-norm statistics,
  spectral-norm vectors) are restored, so measuring never changes a run's numbers.
- Peak: the best of a few square matmuls in the dtype in use (fp32, or bf16/fp16 under autocast)
  on the device, measured in the same process: the CPU kind varies between machines and its bf16
  may be emulated, so no datasheet figure would be right.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

LossFn = Callable[[dict[str, nn.Module], Any], Any]


@contextlib.contextmanager
def _restored(models: dict[str, nn.Module]):
    """Run a measurement, then put back every buffer, the RNG and empty gradients."""
    saved = {(k, n): b.detach().clone() for k, m in models.items() for n, b in m.named_buffers()}
    try:
        with torch.random.fork_rng():
            yield
    finally:
        with torch.no_grad():
            for k, m in models.items():
                for n, b in m.named_buffers():
                    b.copy_(saved[(k, n)])
                m.zero_grad(set_to_none=True)


def measure_flops(losses: LossFn | Iterable[LossFn], models: dict[str, nn.Module], batch: Any) -> float:
    """FLOPs of one training step (each loss's forward and backward, in order) on ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    losses = [losses] if callable(losses) else list(losses)
    with _restored(models), FlopCounterMode(display=False) as counter:
        for loss in losses:
            out = loss(models, batch)
            (out[0] if isinstance(out, tuple) else out).backward()
    return float(counter.get_total_flops())


@functools.cache
def _peak(device: str, dtype: torch.dtype, n: int, repeats: int) -> float:
    dev = torch.device(device)
    a = torch.full((n, n), 0.5, device=dev, dtype=dtype)
    b = torch.full((n, n), 0.25, device=dev, dtype=dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    a @ b  # warm-up: kernels chosen, memory allocated
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_flops(device: torch.device | str, dtype: torch.dtype, n: int = 0, repeats: int = 3) -> float:
    """FLOP/s of the fastest of ``repeats`` (n x n) @ (n x n) matmuls in ``dtype`` on ``device``
    (n: 1024 on CPU, 8192 on GPU); measured once per process and kept."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    return _peak(str(device), dtype, n, repeats)


def mfu(train_flops: float, seconds: float, peak: float) -> float:
    """Model FLOPs utilisation: the fraction of ``peak`` FLOP/s the training FLOPs used."""
    return train_flops / (seconds * peak) if seconds > 0 and peak > 0 else 0.0


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
