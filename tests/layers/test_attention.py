import pytest
import torch

from genlab.layers.attention import (
    ATTENTION,
    MultiHeadAttention,
    causal_mask,
    eager_attention,
    padding_mask,
    sdpa_attention,
)


def qkv(B=2, H=3, T=7, S=7, D=8):
    return torch.randn(B, H, T, D), torch.randn(B, H, S, D), torch.randn(B, H, S, D)


@pytest.mark.parametrize("causal", [False, True])
def test_eager_equals_sdpa(causal):
    q, k, v = qkv()
    torch.testing.assert_close(eager_attention(q, k, v, is_causal=causal), sdpa_attention(q, k, v, is_causal=causal))


def test_padding_mask_eager_equals_sdpa_and_ignores_padding():
    q, k, v = qkv(T=6, S=6)
    lengths = torch.tensor([6, 3])
    attn = (torch.arange(6)[None, :] < lengths[:, None]).long()  # (B, S) 1 = real token
    mask = padding_mask(attn)
    a = eager_attention(q, k, v, mask=mask, is_causal=True)
    b = sdpa_attention(q, k, v, mask=mask, is_causal=True)
    torch.testing.assert_close(a, b)
    # Changing the padded keys/values of row 1 must not change its outputs.
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 3:], v2[1, :, 3:] = 100.0, -100.0
    torch.testing.assert_close(eager_attention(q, k2, v2, mask=mask, is_causal=True)[1, :, :3], a[1, :, :3])


def test_causal_mask_bottom_right_for_queries_after_a_prefix():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    q, k, v = qkv(T=2, S=5)
    torch.testing.assert_close(eager_attention(q, k, v, is_causal=True), sdpa_attention(q, k, v, is_causal=True))


def test_causality_future_tokens_do_not_change_the_past():
    torch.manual_seed(1)
    for backend in ATTENTION:
        mha = MultiHeadAttention(16, 4, backend=backend).eval()
        x = torch.randn(1, 8, 16)
        y = mha(x)
        x2 = x.clone()
        x2[:, 5:] = torch.randn(1, 3, 16)
        torch.testing.assert_close(mha(x2)[:, :5], y[:, :5])


def test_module_backends_equal_with_gradients():
    torch.manual_seed(2)
    a = MultiHeadAttention(32, 4, backend="eager")
    b = MultiHeadAttention(32, 4, backend="sdpa")
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 10, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ya, yb = a(x), b(x2)
    torch.testing.assert_close(ya, yb)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_bad_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="backend"):
        MultiHeadAttention(8, 2, backend="flash9")
