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


# --- every registered backend against the eager reference ---------------------------------

#: Approximate backends opt out of exact equality here, with the tolerance they meet:
#: {"name": {"atol": ..., "rtol": ...}}. Every other entry of ATTENTION must match eager.
APPROXIMATE: dict[str, dict[str, float]] = {}


def _case(name: str):
    """(q, k, v, kwargs) for one situation a backend must handle; H = 4 query heads."""
    g = torch.Generator().manual_seed(0)
    B, H, T, S, D = 2, 4, 5, 5, 8
    kv_heads, kwargs = H, {}
    if name == "causal prefix":
        S, kwargs = 9, {"is_causal": True}
    elif name == "causal":
        kwargs = {"is_causal": True}
    elif name == "padding":
        S = 7
        attn = torch.tensor([[1] * 7, [0, 0, 0, 1, 1, 1, 1]])
        kwargs = {"mask": padding_mask(attn, T), "is_causal": True}
    elif name == "bias":
        S = 7
        kwargs = {"bias": torch.randn(1, H, T, S, generator=g), "is_causal": True}
    elif name == "bias + padding":
        S = 7
        attn = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
        kwargs = {"bias": torch.randn(B, H, T, S, generator=g), "mask": padding_mask(attn)}
    elif name in ("gqa", "mqa"):
        kv_heads = 2 if name == "gqa" else 1
        S = 7
        kwargs = {"is_causal": True, "bias": torch.randn(1, H, 1, S, generator=g)}
    elif name == "fully masked rows":
        mask = torch.ones(B, 1, T, S, dtype=torch.bool)
        mask[0, :, 2], mask[1, :, 0] = False, False  # a query that may see no key at all
        kwargs = {"mask": mask, "bias": torch.randn(1, H, T, S, generator=g)}
    q = torch.randn(B, H, T, D, generator=g)
    k, v = torch.randn(B, kv_heads, S, D, generator=g), torch.randn(B, kv_heads, S, D, generator=g)
    return q, k, v, kwargs


CASES = ["causal", "causal prefix", "padding", "bias", "bias + padding", "gqa", "mqa", "fully masked rows"]


@pytest.mark.parametrize("backend", sorted(ATTENTION))
@pytest.mark.parametrize("case", CASES)
def test_every_backend_equals_the_eager_reference(backend, case):
    q, k, v, kwargs = _case(case)
    ref = eager_attention(q, k, v, **kwargs)
    out = ATTENTION[backend](q, k, v, **kwargs)
    assert out.shape == q.shape and not out.isnan().any()
    torch.testing.assert_close(out, ref, **APPROXIMATE.get(backend, {}))


def test_eager_reference_gqa_is_mha_on_repeated_heads_and_adds_the_bias():
    q, k, v, kwargs = _case("gqa")  # H = 4 queries over 2 key/value heads
    big_k = torch.stack([k[:, 0], k[:, 0], k[:, 1], k[:, 1]], dim=1)  # query heads 0, 1 read head 0; 2, 3 head 1
    big_v = torch.stack([v[:, 0], v[:, 0], v[:, 1], v[:, 1]], dim=1)
    torch.testing.assert_close(eager_attention(q, k, v, **kwargs), eager_attention(q, big_k, big_v, **kwargs))
    bias = kwargs["bias"]
    scores = q @ big_k.transpose(-2, -1) / 8**0.5 + bias
    scores = scores.masked_fill(~causal_mask(5, 7), float("-inf"))
    torch.testing.assert_close(eager_attention(q, k, v, **kwargs), scores.softmax(-1) @ big_v)


def test_fully_masked_rows_give_zeros_and_finite_gradients():
    for backend in sorted(ATTENTION):
        q, k, v, kwargs = _case("fully masked rows")
        q.requires_grad_(True)
        out = ATTENTION[backend](q, k, v, **kwargs)
        assert out[0, :, 2].abs().max() == 0 and out[1, :, 0].abs().max() == 0, backend
        out.square().sum().backward()
        assert torch.isfinite(q.grad).all(), backend


def test_register_attention_adds_an_entry_and_refuses_a_duplicate():
    from genlab.layers.attention import register_attention

    @register_attention("test-double-eager")
    def doubled(q, k, v, mask=None, is_causal=False, dropout_p=0.0, bias=None):
        return eager_attention(q, k, v, mask, is_causal, dropout_p, bias)

    try:
        assert ATTENTION["test-double-eager"] is doubled
        mha = MultiHeadAttention(16, 4, backend="test-double-eager")
        assert mha(torch.randn(1, 3, 16)).shape == (1, 3, 16)
        with pytest.raises(ValueError, match="already registered"):
            register_attention("eager")(doubled)
    finally:
        del ATTENTION["test-double-eager"]


# --- the module: fused QKV, grouped-query heads, cross-attention --------------------------


def test_multi_head_state_dict_keys_and_shapes_are_unchanged():
    mha = MultiHeadAttention(32, 4)
    shapes = {k: tuple(v.shape) for k, v in mha.state_dict().items()}
    assert shapes == {"qkv.weight": (96, 32), "qkv.bias": (96,), "proj.weight": (32, 32), "proj.bias": (32,)}
    gqa = MultiHeadAttention(32, 4, n_kv_head=2)  # (H + 2 Hkv) D = (4 + 4) 8
    assert gqa.qkv.weight.shape == (64, 32) and set(gqa.state_dict()) == set(shapes)


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_grouped_query_module_equals_multi_head_with_repeated_key_value_weights(n_kv_head):
    torch.manual_seed(3)
    H, D, C = 4, 8, 32
    gqa = MultiHeadAttention(C, H, n_kv_head=n_kv_head, backend="sdpa").eval()
    mha = MultiHeadAttention(C, H, backend="eager").eval()
    wq, wk, wv = gqa.qkv.weight.split((H * D, n_kv_head * D, n_kv_head * D))
    bq, bk, bv = gqa.qkv.bias.split((H * D, n_kv_head * D, n_kv_head * D))

    def rep(w):  # (Hkv D, ...) -> (H D, ...): each key/value head serves H / Hkv query heads
        return w.view(n_kv_head, D, *w.shape[1:]).repeat_interleave(H // n_kv_head, 0).reshape(H * D, *w.shape[1:])

    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([wq, rep(wk), rep(wv)]))
        mha.qkv.bias.copy_(torch.cat([bq, rep(bk), rep(bv)]))
        mha.proj.load_state_dict(gqa.proj.state_dict())
    x = torch.randn(2, 9, C)
    torch.testing.assert_close(gqa(x), mha(x))


def test_cross_attention_reads_the_context_and_ignores_its_padding():
    torch.manual_seed(4)
    cross = MultiHeadAttention(16, 4, n_kv_head=2, cross=True, kv_dim=24, backend="eager").eval()
    assert set(cross.state_dict()) == {"q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias"}
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 24)
    ctx_mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    y = cross(x, mask=padding_mask(ctx_mask), context=ctx)
    # By hand: q from x, k and v from the context, no causal mask.
    q = cross.q(x).view(2, 5, 4, 4).transpose(1, 2)  # (B, H, T, D)
    k, v = cross.kv(ctx).view(2, 7, 2, 2, 4).permute(2, 0, 3, 1, 4)  # (B, Hkv, S, D) each
    ref = eager_attention(q, k, v, mask=padding_mask(ctx_mask))
    torch.testing.assert_close(y, cross.proj(ref.transpose(1, 2).reshape(2, 5, 16)))
    ctx2 = ctx.clone()
    ctx2[1, 4:] = 50.0  # padding of row 1
    torch.testing.assert_close(cross(x, mask=padding_mask(ctx_mask), context=ctx2), y)
    sdpa = MultiHeadAttention(16, 4, n_kv_head=2, cross=True, kv_dim=24).eval()
    sdpa.load_state_dict(cross.state_dict())
    torch.testing.assert_close(sdpa(x, mask=padding_mask(ctx_mask), context=ctx), y)


def test_cross_attention_with_a_cache_projects_the_context_once():
    from genlab.layers.kv_cache import KVCache

    torch.manual_seed(5)
    cross = MultiHeadAttention(16, 4, cross=True).eval()
    calls = []
    cross.kv.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape))
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    mask = padding_mask(torch.tensor([[1] * 5, [0, 1, 1, 1, 1]]))
    full = cross(x, mask=mask, context=ctx)
    calls.clear()
    cache = KVCache(1, 2, 4, 4, max_len=8)
    steps = [cross(x[:, :1], mask=mask, context=ctx, cache=cache)]
    steps += [cross(x[:, t : t + 1], mask=mask, cache=cache) for t in range(1, 6)]  # no context needed now
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert calls == [(2, 5, 16)]  # one projection of the context, at the first step
    assert cache.nbytes == cache.k.nbytes * 2 + 2 * (2 * 4 * 5 * 4 * 4)
    cache.repeat_rows(3)  # samples: each row's context copied with it
    again = cross(x[:, :1].repeat_interleave(3, 0), mask=mask.repeat_interleave(3, 0), cache=cache)
    torch.testing.assert_close(again, full[:, :1].repeat_interleave(3, 0))
    with pytest.raises(ValueError, match="per batch"):
        cache.reset_rows([0])


def test_rotary_grouped_query_causal_module_equals_eager():
    from genlab.layers.positional import Rotary

    torch.manual_seed(6)
    rope = Rotary(8, 32)
    a = MultiHeadAttention(32, 4, n_kv_head=1, backend="eager").eval()
    b = MultiHeadAttention(32, 4, n_kv_head=1, backend="sdpa").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(a(x, rotary=rope), b(x, rotary=rope))


def test_module_errors_are_one_line():
    for kwargs, match in [
        ({"n_kv_head": 3}, "not divisible by n_kv_head=3"),
        ({"cross": True, "causal": True}, "not causal"),
        ({"kv_dim": 8}, "cross=True"),
    ]:
        with pytest.raises(ValueError, match=match) as e:
            MultiHeadAttention(16, 4, **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no context"):
        MultiHeadAttention(16, 4)(torch.randn(1, 2, 16), context=torch.randn(1, 3, 16))
    with pytest.raises(ValueError, match="needs a context"):
        MultiHeadAttention(16, 4, cross=True)(torch.randn(1, 2, 16))


def test_sdpa_fallbacks_for_older_torch_give_the_same_result(monkeypatch):
    import genlab.layers.attention as A

    monkeypatch.setattr(A, "SDPA_GQA", False)  # repeat the key/value heads instead of enable_gqa
    monkeypatch.setattr(A, "SDPA_ZERO_MASKED_ROWS", False)  # zero fully masked rows by hand
    for case in ("mqa", "fully masked rows"):
        q, k, v, kwargs = _case(case)
        torch.testing.assert_close(A.sdpa_attention(q, k, v, **kwargs), eager_attention(q, k, v, **kwargs))
