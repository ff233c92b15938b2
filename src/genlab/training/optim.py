"""Optimizers.

AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101) with weight decay on matrices and
embeddings only; biases and norm gains are not decayed. Uses PyTorch's fused kernel
where the device has one, else the multi-tensor (foreach) path.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    seen, decay, no_decay = set(), [], []
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    device = next(model.parameters()).device
    if fused is None:
        fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device.type in ("cpu", "cuda")
    kw = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, **kw)
