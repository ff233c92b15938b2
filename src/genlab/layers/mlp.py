"""Position-wise feed-forward networks.

FFN(x)    = W2 act(W1 x + b1) + b2                  act in {ReLU, GELU, tanh-GELU}
SwiGLU(x) = W2 (SiLU(W1 x) * (W3 x))                 (Shazeer 2020, arXiv:2002.05202)
GEGLU(x)  = W2 (GELU(W1 x) * (W3 x))                 (the same paper; T5 v1.1's "gated-gelu",
                                                      with the tanh approximation of GELU)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.layers.linear import Linear

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "silu": F.silu,  # "swish": Marian's feed-forward activation
}


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str = "gelu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; choose from {sorted(ACTIVATIONS)}")
        self.fc = Linear(dim, hidden, bias=bias)
        self.proj = Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.fc = Linear(dim, 2 * hidden, bias=bias)  # W1 and W3 fused
        self.proj = Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.dropout(self.proj(F.silu(gate) * up))


class GatedMLP(nn.Module):
    """act(W1 x) * (W3 x), then W2: GEGLU with ``activation="gelu_tanh"`` (T5 v1.1). Like
    :class:`SwiGLU`, W1 (the gate) and W3 are one fused projection, gate first."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu_tanh", bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.fc = Linear(dim, 2 * hidden, bias=bias)  # W1 and W3 fused
        self.proj = Linear(hidden, dim, bias=bias)
        self.act = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.proj(self.dropout(self.act(gate) * up))


def make_mlp(kind: str, dim: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> nn.Module:
    """``kind`` is an activation name (plain FFN), ``"swiglu"`` or ``"gated-gelu"``."""
    if kind == "swiglu":
        return SwiGLU(dim, hidden, bias=bias, dropout=dropout)
    if kind == "gated-gelu":
        return GatedMLP(dim, hidden, "gelu_tanh", bias=bias, dropout=dropout)
    return MLP(dim, hidden, activation=kind, bias=bias, dropout=dropout)


MLP_KINDS = sorted([*ACTIVATIONS, "swiglu", "gated-gelu"])
