import math

import torch

from genlab.layers.mlp import MLP, SwiGLU, make_mlp
from genlab.layers.norm import make_norm
from genlab.layers.positional import Rotary, sinusoidal_table


def test_sinusoidal_table_matches_formula():
    t = sinusoidal_table(50, 16)
    p, i = 7, 3
    assert math.isclose(t[p, 2 * i].item(), math.sin(p / 10000 ** (2 * i / 16)), rel_tol=1e-5)
    assert math.isclose(t[p, 2 * i + 1].item(), math.cos(p / 10000 ** (2 * i / 16)), rel_tol=1e-5)


def test_rope_preserves_norm_and_depends_only_on_relative_position():
    rope = Rotary(8, 64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    torch.testing.assert_close(rope(q, offset=5).norm(), q.norm())

    def score(m, n):
        return (rope(q, offset=m) * rope(k, offset=n)).sum()

    torch.testing.assert_close(score(10, 7), score(33, 30))
    assert not torch.allclose(score(10, 7), score(10, 8))


def test_rope_offset_equals_slice_of_longer_sequence():
    rope = Rotary(8, 64)
    x = torch.randn(2, 3, 10, 8)
    torch.testing.assert_close(rope(x)[:, :, 4:], rope(x[:, :, 4:], offset=4))


def test_mlp_kinds():
    x = torch.randn(2, 5, 12)
    assert isinstance(make_mlp("swiglu", 12, 20), SwiGLU)
    for kind in ("relu", "gelu", "gelu_tanh", "swiglu"):
        assert make_mlp(kind, 12, 20)(x).shape == x.shape
    m = MLP(4, 8, "relu", bias=False)
    with torch.no_grad():
        m.fc.weight.copy_(torch.eye(8, 4))
        m.proj.weight.copy_(torch.eye(4, 8))
    torch.testing.assert_close(m(torch.tensor([[1.0, -2.0, 3.0, -4.0]])), torch.tensor([[1.0, 0.0, 3.0, 0.0]]))


def test_norms():
    x = torch.randn(4, 16) * 3 + 1
    ln = make_norm("layernorm", 16)(x)
    torch.testing.assert_close(ln.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    rms = make_norm("rmsnorm", 16)(x)
    torch.testing.assert_close(rms.square().mean(-1), torch.ones(4), atol=1e-3, rtol=0)


def test_decode_layout_linear_equals_nn_linear_and_never_goes_stale():
    from genlab.layers.linear import ONEDNN, PACKED_ROWS, Linear, prepare_decode, release_decode

    torch.manual_seed(0)
    layer = Linear(8, 24)
    packed = 8 * 24 * 4 if ONEDNN else 0  # the oneDNN-packed copy, where oneDNN is present
    assert prepare_decode(layer) == 8 * 24 * 4 + packed and layer.decode_weight.shape == (8, 24)
    assert (layer.packed_weight is not None) == ONEDNN
    with torch.no_grad():
        # one row (transposed copy), a few rows (packed copy), past PACKED_ROWS (nn.Linear itself)
        for rows in (1, 2, 5, PACKED_ROWS, PACKED_ROWS + 1):
            x = torch.randn(rows, 1, 8)
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        layer.weight.add_(1.0)  # an update makes the copies stale: they must not be used
        for rows in (1, 4):
            x = torch.randn(1, rows, 8)
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert layer(torch.randn(4, 8)).requires_grad  # training still goes through nn.Linear's path
    # PyTorch's fused AdamW updates in place without bumping the version: a step must still retire the copies
    prepare_decode(layer)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.5, fused=True)
    layer(torch.randn(3, 8)).square().sum().backward()
    version = layer.weight._version
    opt.step()
    assert layer.weight._version == version  # what the version counter alone would have missed
    with torch.no_grad():
        for rows in (1, 4):
            x = torch.randn(rows, 8)
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    release_decode(layer)
    assert layer.decode_weight is None and layer.packed_weight is None
    narrow = Linear(24, 8)  # (out < in): nn.Linear's layout beats the transposed one; only a packed copy
    assert prepare_decode(narrow) == packed
    assert prepare_decode(narrow) == 0  # idempotent: fresh copies are kept
    release_decode(narrow)
    assert prepare_decode(narrow, packed=False) == 0 and narrow.packed_weight is None
    with torch.no_grad():
        x = torch.randn(3, 24)
        torch.testing.assert_close(narrow(x), torch.nn.functional.linear(x, narrow.weight, narrow.bias))


def test_alibi_slopes_follow_the_paper():
    from genlab.layers.positional import alibi_slopes

    # A power of 2: the geometric sequence 2^(-8h/H), h = 1..H (H = 8: 1/2 ... 1/256).
    assert alibi_slopes(8).tolist() == [2.0**-h for h in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    # Otherwise: the 4 slopes for 4 heads, then the odd terms of the 8-head sequence.
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    twelve = alibi_slopes(12)
    torch.testing.assert_close(twelve[:8], alibi_slopes(8))
    torch.testing.assert_close(twelve[8:], torch.tensor([2.0 ** (-h / 2) for h in (1, 3, 5, 7)]))
    assert alibi_slopes(1).tolist() == [2.0**-8]


def test_alibi_bias_is_minus_slope_times_distance():
    from genlab.layers.positional import ALiBi, alibi_slopes

    alibi = ALiBi(4)
    assert alibi.state_dict() == {}  # the slopes are not weights
    bias = alibi(torch.arange(3, 5), torch.arange(5))  # queries 3, 4 over keys 0..4
    assert bias.shape == (1, 4, 2, 5)
    m = alibi_slopes(4)
    torch.testing.assert_close(bias[0, :, 0, 0], -3 * m)
    torch.testing.assert_close(bias[0, :, 1, 4], torch.zeros(4))
    # Shifting every position of a row (left padding) leaves the biases unchanged.
    rows = alibi(torch.tensor([[3, 4], [8, 9]]), torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]))
    torch.testing.assert_close(rows[1], rows[0])
