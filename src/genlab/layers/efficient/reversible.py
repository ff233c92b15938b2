"""Reversible residual layers (RevNet, Reformer) and chunked feed-forward.

Gomez, Ren, Urtasun & Grosse 2017, "The Reversible Residual Network", arXiv:1707.04585;
Kitaev, Kaiser & Levskaya 2020, "Reformer", arXiv:2001.04451, sections 3-4.

Axes: B batch, T time, C model dim. The activations are split in two streams (x1, x2), and
each layer maps them by

    y1 = x1 + F(x2)          x2 = y2 - G(y1)
    y2 = x2 + G(y1)          x1 = y1 - F(x2)          (the inverse, right)

so backward can rebuild every layer's input from its output. :func:`reversible` runs a stack
of layers through one autograd Function that keeps only the last (y1, y2): activation memory
is independent of depth, at the price of running F and G again in backward. Each layer's
RNG state (CPU, and CUDA when the tensors are there) is saved before F and before G and
restored for the recomputation, so dropout draws the same masks twice.

Chunked feed-forward (Reformer section 4): G is position-wise, so it can run over ``chunks``
slices of the time axis one after another, in forward and in the recomputing backward, and its
(B, T, 4C) hidden activations never exist all at once.

F and G are callables on (B, T, C) tensors; anything else they read (masks, rotary tables)
must not need a gradient. Their parameters are found with ``parameters()`` when they are
modules, or passed in ``params``; backward accumulates their gradients into ``.grad``
directly, so train with ``loss.backward()`` (``torch.autograd.grad`` with respect to those
parameters does not see them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunks: int, dim: int = 1) -> torch.Tensor:
    """fn applied to ``chunks`` slices of x along ``dim`` in turn: fn(x) for a position-wise fn."""
    if chunks <= 1:
        return fn(x)
    return torch.cat([fn(part) for part in x.chunk(chunks, dim=dim)], dim=dim)


@dataclass
class RevLayer:
    """One reversible layer: y1 = x1 + f(x2), y2 = x2 + g(y1); g runs in ``g_chunks`` time slices."""

    f: Callable[[torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]
    g_chunks: int = 1
    params: Sequence[nn.Parameter] = field(default_factory=list)

    def parameters(self) -> list[nn.Parameter]:
        if self.params:
            return list(self.params)
        own = [m.parameters() for m in (self.f, self.g) if isinstance(m, nn.Module)]
        return [p for ps in own for p in ps]


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


class _restored_rng:
    """Run a block with the RNG as it was (forked: the caller's RNG is left untouched)."""

    def __init__(self, state, device: torch.device):
        self.state, self.device = state, device

    def __enter__(self):
        devices = [self.device] if self.device.type == "cuda" else []
        self.fork = torch.random.fork_rng(devices=devices)
        self.fork.__enter__()
        torch.set_rng_state(self.state[0])
        if self.state[1] is not None:
            torch.cuda.set_rng_state(self.state[1], self.device)

    def __exit__(self, *exc):
        return self.fork.__exit__(*exc)


def _step(layer: RevLayer, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y1 = x1 + layer.f(x2)
    return y1, x2 + chunked(layer.g, y1, layer.g_chunks)


class _Reversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, x2, layers, n_params, *params):
        ctx.layers, ctx.states = layers, []
        with torch.no_grad():
            for layer in layers:
                s_f = _rng_state(x1.device)
                y1 = x1 + layer.f(x2)
                s_g = _rng_state(x1.device)
                x2 = x2 + chunked(layer.g, y1, layer.g_chunks)
                x1 = y1
                ctx.states.append((s_f, s_g))
        ctx.save_for_backward(x1, x2)  # the only activations kept: the last layer's output
        ctx.n_params = n_params  # inputs only so that backward runs even when x1, x2 need no gradient
        return x1, x2

    @staticmethod
    def backward(ctx, dy1, dy2):
        # Each branch is recomputed from its rebuilt input and back-propagated with a plain
        # backward(), which accumulates into the parameters' .grad directly (as Reformer's and
        # RevTorch's reversible layers do); the Function returns no gradient for them. (Not
        # torch.autograd.grad: module hooks that watch gradients, e.g. FlopCounterMode's
        # module tracker, cannot run inside it.)
        y1, y2 = ctx.saved_tensors
        device = y1.device
        for layer, (s_f, s_g) in zip(reversed(ctx.layers), reversed(ctx.states), strict=True):
            # y2 = x2 + G(y1): rebuild x2, and send dy2 through G (chunk by chunk) into dy1.
            dy1_total = dy1.clone()
            x2 = y2.clone()
            chunks = max(layer.g_chunks, 1)
            start = 0
            with _restored_rng(s_g, device):
                for part, d_part in zip(y1.chunk(chunks, dim=1), dy2.chunk(chunks, dim=1), strict=True):
                    inp = part.detach().requires_grad_()
                    with torch.enable_grad():
                        out = layer.g(inp)
                    torch.autograd.backward(out, d_part)
                    sl = slice(start, start + part.size(1))
                    dy1_total[:, sl] += inp.grad
                    x2[:, sl] -= out.detach()
                    start += part.size(1)
            # y1 = x1 + F(x2): rebuild x1, and send dy1 through F into dx2.
            inp = x2.detach().requires_grad_()
            with _restored_rng(s_f, device):
                with torch.enable_grad():
                    out = layer.f(inp)
                torch.autograd.backward(out, dy1_total)
            x1 = y1 - out.detach()
            dy1, dy2 = dy1_total, dy2 + inp.grad
            y1, y2 = x1, x2
        return (dy1, dy2, None, None, *([None] * ctx.n_params))


def reversible(
    x1: torch.Tensor, x2: torch.Tensor, layers: Sequence[RevLayer], recompute: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``layers`` on the two streams. ``recompute`` (default: when autograd is recording)
    goes through the memory-saving Function; otherwise the layers run one after another."""
    if recompute is None:
        recompute = torch.is_grad_enabled() and (x1.requires_grad or x2.requires_grad or _any_params(layers))
    if not recompute:
        for layer in layers:
            x1, x2 = _step(layer, x1, x2)
        return x1, x2
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for layer in layers:
        for p in layer.parameters():
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                params.append(p)
    return _Reversible.apply(x1, x2, list(layers), len(params), *params)


def _any_params(layers: Sequence[RevLayer]) -> bool:
    return any(p.requires_grad for layer in layers for p in layer.parameters())


def ordinary(x1: torch.Tensor, x2: torch.Tensor, layers: Sequence[RevLayer]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the same equations through ordinary autograd (every activation stored)."""
    for layer in layers:
        x1, x2 = _step(layer, x1, x2)
    return x1, x2
