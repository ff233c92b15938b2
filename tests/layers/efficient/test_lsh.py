"""Reformer LSH attention against dense shared query-key attention."""

import pytest
import torch

from genlab.layers.efficient.lsh import LSHAttention, hash_buckets, lsh_attention, random_rotations, shared_qk_attention


def _qkv(B=2, H=2, T=32, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(2)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("rounds", [1, 3])
def test_one_bucket_one_chunk_is_full_shared_qk_attention(causal, rounds):
    qk, v = _qkv(T=29)
    key_mask = torch.ones(2, 29, dtype=torch.bool)
    key_mask[1, 20:] = False
    out = lsh_attention(qk, v, 1, rounds, 29, causal=causal, key_mask=key_mask)
    ref = shared_qk_attention(qk, v, causal=causal, key_mask=key_mask)
    torch.testing.assert_close(out[0], ref[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out[1, :, :20], ref[1, :, :20], atol=1e-10, rtol=1e-10)


def test_a_query_attends_to_itself_only_when_alone():
    qk, v = _qkv(T=6)
    out = lsh_attention(qk, v, 1, 1, 6, causal=True)
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0])  # the first token has nothing else
    weights_self = shared_qk_attention(qk, torch.eye(6, dtype=torch.float64).expand(2, 2, 6, 6), causal=True)
    assert float(weights_self.diagonal(dim1=-2, dim2=-1)[..., 1:].max()) < 1e-30


def test_causal_lsh_reads_no_future_value():
    """The causal mask keeps every later value out. (Later tokens' buckets still shift the chunk
    boundaries, so which earlier keys a query meets can depend on them: see the module docstring.)"""
    qk, v = _qkv(T=48)
    g = torch.Generator().manual_seed(3)
    rot = random_rotations(2, 8, 2, 4, generator=g)
    a = lsh_attention(qk, v, 4, 2, 8, causal=True, rotations=rot)
    v2 = v.clone()
    v2[:, :, 30:] += 1.0
    b = lsh_attention(qk, v2, 4, 2, 8, causal=True, rotations=rot)
    torch.testing.assert_close(a[:, :, :30], b[:, :, :30], atol=1e-12, rtol=0)


def _error_curve(rounds_list, seeds=(0, 1, 2)):
    errs = []
    for rounds in rounds_list:
        e = 0.0
        for seed in seeds:
            qk, v = _qkv(B=1, H=2, T=64, D=8, seed=100 + seed)
            g = torch.Generator().manual_seed(seed)
            approx = lsh_attention(qk, v, 8, rounds, 8, generator=g)
            e += float((approx - shared_qk_attention(qk, v)).abs().mean()) / len(seeds)
        errs.append(e)
    return errs


def test_error_against_full_attention_falls_as_rounds_grow():
    rounds = [1, 2, 4, 8, 16]
    errs = _error_curve(rounds)
    print("lsh rounds -> mean |lsh - full|:", dict(zip(rounds, [round(e, 4) for e in errs], strict=True)))
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False)), errs
    assert errs[-1] < 0.5 * errs[0]


def test_hashing_is_angular():
    rot = random_rotations(1, 4, 1, 6, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 1, 10, 4, dtype=torch.float64)
    b = hash_buckets(x.float(), 6, rot)
    assert b.shape == (1, 1, 1, 10) and int(b.max()) < 6
    torch.testing.assert_close(hash_buckets((3 * x).float(), 6, rot), b)  # scale does not change a bucket


def test_module_with_seed_is_deterministic_and_backprops():
    attn = LSHAttention(16, 2, n_buckets=4, n_rounds=2, chunk=4, causal=True, seed=7)
    x = torch.randn(2, 20, 16, requires_grad=True)
    y = attn(x)
    torch.testing.assert_close(y, attn(x))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_errors():
    with pytest.raises(ValueError, match="even count"):
        LSHAttention(16, 2, n_buckets=5)
    attn = LSHAttention(16, 2, n_buckets=4)
    with pytest.raises(ValueError, match="causal model"):
        attn(torch.randn(1, 4, 16), cache=object())
