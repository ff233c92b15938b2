"""The KV cache: a length per row, ragged writes, row copies for samples and for serving."""

import pytest
import torch

from genlab.layers.kv_cache import KVCache


def kv(B, T, H=2, D=3, fill=None):
    x = torch.randn(B, H, T, D) if fill is None else torch.full((B, H, T, D), float(fill))
    return x, x + 100


def test_uniform_rows_write_slices_and_share_one_length():
    cache = KVCache(n_layer=2, batch=3, n_head=2, head_dim=3, max_len=10)
    k, v = kv(3, 4)
    for layer in range(2):
        ks, vs = cache.append(layer, k, v)
        assert ks.shape == (3, 2, 4, 3) and ks.data_ptr() == cache.k[layer].data_ptr()  # a view, no copy
        torch.testing.assert_close(vs, v)
    cache.advance(4)
    assert cache.length == 4 and cache.uniform and cache.lengths.tolist() == [4, 4, 4]
    assert cache.key_mask(1) is None  # nothing to hide
    with pytest.raises(ValueError, match="holds 10 positions; 11 requested"):
        cache.append(0, *kv(3, 7))


def test_rows_of_different_lengths_write_at_their_own_length_and_hide_the_rest():
    cache = KVCache(1, 2, 2, 3, max_len=10)
    cache.append(0, *kv(2, 4, fill=1))
    cache.advance(4)
    cache.reset_rows([1])  # row 1 freed for a new request
    assert cache.lengths.tolist() == [4, 0] and not cache.uniform and cache.length == 4
    ks, _ = cache.append(0, *kv(2, 2, fill=2))
    assert ks.shape == (2, 2, 6, 3)  # S = longest row + T
    assert ks[0, 0, :, 0].tolist() == [1, 1, 1, 1, 2, 2]  # row 0 continues at 4
    assert ks[1, 0, :, 0].tolist() == [2, 2, 1, 1, 0, 0]  # row 1 starts again at 0; 2.. are stale
    mask = cache.key_mask(2)  # (B, 1, T, S): query i of row b sees keys <= lengths[b] + i
    assert mask.shape == (2, 1, 2, 6)
    assert mask[0, 0].int().tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert mask[1, 0].int().tolist() == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert cache.positions(2).tolist() == [[4, 5], [0, 1]]
    cache.advance(2)
    assert cache.lengths.tolist() == [6, 2] and cache.length == 6
    cache.reset_rows([0])
    cache.reset_rows(torch.tensor([1]))
    assert cache.uniform and cache.length == 0


def test_write_rows_copies_a_prefilled_cache_into_a_running_batch():
    big = KVCache(1, 3, 2, 3, max_len=8)
    big.append(0, *kv(3, 5, fill=1))
    big.advance(5)
    one = KVCache(1, 1, 2, 3, max_len=8)
    one.append(0, *kv(1, 2, fill=7))
    one.advance(2)
    big.write_rows([1], one)
    assert big.lengths.tolist() == [5, 2, 5] and not big.uniform
    assert big.k[0, 1, 0, :2, 0].tolist() == [7, 7]
    with pytest.raises(ValueError, match="cannot write a cache"):
        big.write_rows([0, 1], one)


def test_repeat_rows_and_reorder():
    cache = KVCache(2, 2, 2, 3, max_len=6)
    k = torch.arange(2.0)[:, None, None, None].expand(2, 2, 3, 3)  # row r holds r
    cache.append(0, k, k)
    cache.append(1, k, k)
    cache.advance(3)
    cache.repeat_rows(3)  # B = 2 -> 6: rows 0-2 are prompt 0, rows 3-5 prompt 1
    assert cache.k.shape == (2, 6, 2, 6, 3) and cache.lengths.tolist() == [3] * 6
    assert cache.k[1, :, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1]
    cache.reorder(torch.tensor([5, 0]))
    assert cache.k[0, :, 0, 0, 0].tolist() == [1, 0] and cache.batch == 2


def test_grouped_query_heads_shrink_the_cache():
    mha = KVCache(4, 2, n_head=8, head_dim=16, max_len=32)
    gqa = KVCache(4, 2, n_head=2, head_dim=16, max_len=32)
    assert mha.nbytes == 2 * 4 * 2 * 8 * 32 * 16 * 4 and gqa.nbytes * 4 == mha.nbytes
