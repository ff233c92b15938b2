"""Normalisation layers.

LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b    (Ba et al. 2016, arXiv:1607.06450)
RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * g                 (Zhang & Sennrich 2019, arXiv:1910.07467)
"""

from __future__ import annotations

import torch.nn as nn


def make_norm(kind: str, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm '{kind}'; choose from {NORM_KINDS}")


NORM_KINDS = ["layernorm", "rmsnorm"]
