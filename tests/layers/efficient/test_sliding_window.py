"""Longformer attention: the chunked path against the dense banded mask through the eager backend
(which computes its softmax in fp32, hence 1e-6 on fp64 inputs)."""

import pytest
import torch

from genlab.layers.efficient.sliding_window import (
    LongformerAttention,
    dense_sliding_window_attention,
    sliding_window_attention,
    sliding_window_mask,
)


def _qkv(B=2, H=3, T=37, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window,dilation,chunk", [(4, 1, 0), (6, 1, 5), (8, 2, 0), (2, 3, 7), (40, 1, 0)])
def test_chunked_equals_dense_band(causal, window, dilation, chunk):
    q, k, v = _qkv()
    fast = sliding_window_attention(q, k, v, window, causal=causal, dilation=dilation, chunk=chunk)
    ref = dense_sliding_window_attention(q, k, v, window, causal=causal, dilation=dilation)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dilation", [1, 2])
def test_global_tokens_and_padding_equal_dense(causal, dilation):
    q, k, v = _qkv(T=29)
    gq, gk, gv = _qkv(T=29, seed=1)
    key_mask = torch.ones(2, 29, dtype=torch.bool)
    key_mask[1, 23:] = False
    glob = torch.zeros(2, 29, dtype=torch.bool)
    glob[0, [0, 11, 20]] = True
    glob[1, [0, 5]] = True
    for gqkv in (None, (gq, gk, gv)):
        kw = dict(causal=causal, dilation=dilation, key_mask=key_mask, global_mask=glob, global_qkv=gqkv)
        fast = sliding_window_attention(q, k, v, 6, chunk=4, **kw)
        ref = dense_sliding_window_attention(q, k, v, 6, **kw)
        torch.testing.assert_close(fast[1, :, :23], ref[1, :, :23], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(fast[0], ref[0], atol=1e-6, rtol=1e-6)


def test_window_definition():
    m = sliding_window_mask(6, 4, causal=False)
    assert m[3].tolist() == [False, True, True, True, True, True]  # w/2 = 2 each side
    m = sliding_window_mask(6, 2, causal=True)
    assert m[3].tolist() == [False, True, True, True, False, False]  # itself and 2 back
    m = sliding_window_mask(7, 2, causal=True, dilation=2)
    assert m[6].tolist() == [False, False, True, False, True, False, True]


def test_a_window_wider_than_the_sequence_is_full_attention():
    from genlab.layers.attention import eager_attention

    q, k, v = _qkv(T=9)
    torch.testing.assert_close(sliding_window_attention(q, k, v, 20), eager_attention(q, k, v), atol=1e-6, rtol=1e-6)
    causal = sliding_window_attention(q, k, v, 20, causal=True)
    torch.testing.assert_close(causal, eager_attention(q, k, v, is_causal=True), atol=1e-6, rtol=1e-6)


def test_gradients_equal_dense():
    q, k, v = (t.requires_grad_() for t in _qkv(T=21))
    glob = torch.zeros(2, 21, dtype=torch.bool)
    glob[:, 3] = True
    fast = sliding_window_attention(q, k, v, 4, global_mask=glob, chunk=3)
    g_fast = torch.autograd.grad(fast.square().sum(), (q, k, v))
    ref = dense_sliding_window_attention(q, k, v, 4, global_mask=glob)
    g_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_memory_is_linear_in_length():
    """The largest tensor autograd saves grows like T w, not T^2."""
    sizes = {}
    for T in (256, 1024):
        q, k, v = (torch.randn(1, 1, T, 4, requires_grad=True) for _ in range(3))
        biggest = [0]

        def pack(t, biggest=biggest):
            biggest[0] = max(biggest[0], t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sliding_window_attention(q, k, v, 16).sum()
        sizes[T] = biggest[0]
    assert sizes[1024] <= 4 * sizes[256] + 64  # linear; a T x T matrix would be 16x


def test_bad_window_is_one_line_error():
    q, k, v = _qkv(T=8)
    with pytest.raises(ValueError, match="must be even"):
        sliding_window_attention(q, k, v, 5)
    with pytest.raises(ValueError, match="dilation"):
        sliding_window_attention(q, k, v, 4, dilation=0)


def test_module_cache_decoding_equals_full_forward():
    from genlab.layers.kv_cache import KVCache

    torch.manual_seed(0)
    attn = LongformerAttention(16, 2, 3, causal=True, dilation=2).double().eval()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    full = attn(x)
    cache = KVCache(1, 2, 2, 8, 11, torch.float64, "cpu")
    steps = [attn(x[:, :5], cache=cache)]
    cache.advance(5)
    for t in range(5, 11):
        steps.append(attn(x[:, t : t + 1], cache=cache))
        cache.advance(1)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=1e-6)
