"""Reversible residual layers: gradients equal ordinary autograd, activation memory flat in depth."""

import torch
import torch.nn as nn

from genlab.layers.efficient.reversible import RevLayer, chunked, ordinary, reversible


def _layers(depth, dropout=0.0, g_chunks=1, C=8):
    torch.manual_seed(0)

    def branch():
        return nn.Sequential(nn.LayerNorm(C), nn.Linear(C, 2 * C), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * C, C))

    mods = nn.ModuleList(nn.ModuleList([branch(), branch()]) for _ in range(depth)).double()
    return mods, [RevLayer(f, g, g_chunks=g_chunks) for f, g in mods]


def _grads(fn, mods, x, seed=1):
    torch.manual_seed(seed)
    a = x.clone().requires_grad_()
    b = (x * 0.5).clone().requires_grad_()
    y1, y2 = fn(a, b)
    loss = (y1 * torch.linspace(-1, 1, y1.size(-1), dtype=y1.dtype)).sum() + y2.square().sum()
    mods.zero_grad(set_to_none=True)
    loss.backward()  # the reversible backward accumulates parameter gradients into .grad
    return [y1, y2, a.grad, b.grad, *(p.grad for p in mods.parameters())]


def test_gradients_equal_ordinary_residuals_fp64():
    for dropout, g_chunks in ((0.0, 1), (0.3, 1), (0.3, 3)):
        mods, layers = _layers(4, dropout, g_chunks)
        mods.train()
        x = torch.randn(2, 9, 8, dtype=torch.float64)
        rev = _grads(lambda a, b, L=layers: reversible(a, b, L, recompute=True), mods, x)
        ref = _grads(lambda a, b, L=layers: ordinary(a, b, L), mods, x)
        for r, o in zip(rev, ref, strict=True):
            torch.testing.assert_close(r, o, atol=1e-8, rtol=1e-8)


def test_the_callers_rng_moves_as_in_ordinary_forward_and_not_in_backward():
    mods, layers = _layers(2, dropout=0.5)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    torch.manual_seed(5)
    ordinary(x, x, layers)
    expected = torch.rand(3)
    torch.manual_seed(5)
    y1, y2 = reversible(x.clone().requires_grad_(), x.clone(), layers, recompute=True)
    state = torch.get_rng_state()
    (y1.sum() + y2.sum()).backward()
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)


def _saved_bytes(fn, x):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y1, y2 = fn(x.clone().requires_grad_(), x.clone().requires_grad_())
    return total[0]


def test_stored_activations_do_not_grow_with_depth():
    x = torch.randn(4, 64, 8, dtype=torch.float64)
    rev, plain = {}, {}
    for depth in (2, 8):
        _, layers = _layers(depth)
        rev[depth] = _saved_bytes(lambda a, b, layers=layers: reversible(a, b, layers, recompute=True), x)
        plain[depth] = _saved_bytes(lambda a, b, layers=layers: ordinary(a, b, layers), x)
    assert rev[2] == rev[8]
    assert plain[8] > 3 * plain[2] and rev[8] < plain[2]


def test_chunked_feed_forward_equals_whole():
    mlp = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 4)).double()
    x = torch.randn(3, 10, 4, dtype=torch.float64)
    torch.testing.assert_close(chunked(mlp, x, 4), mlp(x), atol=1e-12, rtol=0)
    assert chunked(mlp, x, 1).shape == x.shape


def test_backward_runs_under_the_flop_counter():
    """The runner measures FLOPs with FlopCounterMode, whose module hooks watch gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    mods, layers = _layers(2)
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        y1, y2 = reversible(x, x, layers, recompute=True)
        (y1.sum() + y2.sum()).backward()
    assert counter.get_total_flops() > 0 and x.grad is not None
    assert all(p.grad is not None for p in mods.parameters())
