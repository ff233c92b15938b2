"""Token streams: memmap storage and caching, file-order split, random windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.errors import DataError
from genlab.data import text as text_mod
from genlab.data.text import RandomWindows, encode_to_memmap, fixed_batches, split, token_stream
from genlab.tokenizers import CharTokenizer


class CountingCharTokenizer(CharTokenizer):
    """A character tokenizer that counts how often it encodes."""

    calls = 0

    def encode_np(self, text: str) -> np.ndarray:
        type(self).calls += 1
        return super().encode_np(text)


class WideTokenizer:
    """Code points as ids, with a vocabulary too large for uint16."""

    vocab_size = 200_000

    def encode_np(self, text: str) -> np.ndarray:
        return np.array([ord(c) for c in text], dtype=np.int64)

    def fingerprint(self) -> str:
        return "wide"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question\n" * 20)
    return path


def test_encode_to_memmap_round_trip(tmp_path: Path) -> None:
    text = "hello memory-mapped world\n"
    tok = CharTokenizer.train(text)
    path = tmp_path / "tokens" / "hello.bin"
    arr = encode_to_memmap(text, tok, path)
    assert isinstance(arr, np.memmap) and arr.dtype == np.uint16
    assert tok.decode(np.asarray(arr)) == text
    assert path.stat().st_size == 2 * len(text)
    meta = json.loads(path.with_name("hello.bin.json").read_text())
    assert meta["dtype"] == "uint16" and meta["length"] == len(text)
    assert meta["vocab_size"] == tok.vocab_size
    assert meta["fingerprint"] == text_mod.stream_fingerprint(text, tok)
    assert sorted(p.name for p in path.parent.iterdir()) == ["hello.bin", "hello.bin.json"]


def test_large_vocabularies_are_stored_as_uint32(tmp_path: Path) -> None:
    arr = encode_to_memmap("\U0001f600ab", WideTokenizer(), tmp_path / "wide.bin")
    assert arr.dtype == np.uint32
    assert arr.tolist() == [0x1F600, ord("a"), ord("b")]


def test_token_stream_reuses_the_cache_and_rebuilds_when_stale(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tok = CountingCharTokenizer.train(corpus.read_text() + "!")
    CountingCharTokenizer.calls = 0

    first = token_stream(str(corpus), tok, cache)
    again = token_stream(str(corpus), tok, cache)
    assert CountingCharTokenizer.calls == 1  # second call read the cache
    np.testing.assert_array_equal(first, again)

    corpus.write_text(corpus.read_text() + "!")  # the text changed: re-encode
    changed = token_stream(str(corpus), tok, cache)
    assert CountingCharTokenizer.calls == 2
    assert len(changed) == len(first) + 1

    sidecar = next(cache.glob("*.bin.json"))
    sidecar.write_text("{ not json")  # a corrupt sidecar: re-encode, don't crash
    token_stream(str(corpus), tok, cache)
    assert CountingCharTokenizer.calls == 3

    other = CountingCharTokenizer(sorted(set(corpus.read_text())) + ["#"])
    token_stream(str(corpus), other, cache)  # another tokenizer: its own file
    assert CountingCharTokenizer.calls == 4
    assert len(list(cache.glob("*.bin"))) == 2


def test_split_is_in_file_order_and_returns_views() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    train, val = split(tokens, val_fraction=0.1)
    np.testing.assert_array_equal(train, np.arange(900))
    np.testing.assert_array_equal(val, np.arange(900, 1000))
    assert np.shares_memory(train, tokens) and np.shares_memory(val, tokens)
    with pytest.raises(DataError, match="val_fraction"):
        split(tokens, val_fraction=1.0)


def test_random_windows_shapes_and_shift() -> None:
    tokens = np.arange(500, dtype=np.uint16)  # token value == position
    windows = RandomWindows(tokens, block_size=16, batch_size=4, seed=0)
    x, y = next(windows)
    assert x.shape == y.shape == (4, 16)
    assert x.dtype == y.dtype == torch.int64
    torch.testing.assert_close(y, x + 1)  # y is x shifted by one position
    torch.testing.assert_close(x, x[:, :1] + torch.arange(16))  # contiguous windows
    assert int(x.min()) >= 0 and int(y.max()) <= 499


def test_random_windows_cover_every_start_and_stay_in_bounds() -> None:
    tokens = np.arange(11, dtype=np.uint16)  # block 8: starts 0, 1, 2 are the only valid ones
    windows = RandomWindows(tokens, block_size=8, batch_size=64, seed=3)
    starts = set()
    for _ in range(5):
        x, _y = next(windows)
        starts.update(x[:, 0].tolist())
    assert starts == {0, 1, 2}


def test_random_windows_resume_exactly() -> None:
    tokens = np.arange(10_000, dtype=np.uint16)
    windows = RandomWindows(tokens, block_size=32, batch_size=8, seed=1234)
    for _ in range(3):
        next(windows)
    state = windows.state_dict()
    expected = [next(windows) for _ in range(2)]

    resumed = RandomWindows(tokens, block_size=32, batch_size=8, seed=999)
    resumed.load_state_dict(state)
    assert resumed.step == 3
    for (x, y), (ex, ey) in zip(expected, [next(resumed) for _ in range(2)]):
        assert torch.equal(x, ex) and torch.equal(y, ey)

    with pytest.raises(DataError, match="block size"):
        RandomWindows(tokens, block_size=16, batch_size=8).load_state_dict(state)


def test_ddp_ranks_draw_different_slices_of_the_global_batch() -> None:
    tokens = np.arange(10_000, dtype=np.uint16)
    ranks = [RandomWindows(tokens, 32, 4, seed=7, rank=r, world_size=2) for r in range(2)]
    single = RandomWindows(tokens, 32, 8, seed=7)
    for _ in range(3):
        (x0, _), (x1, _) = next(ranks[0]), next(ranks[1])
        assert not torch.equal(x0, x1)
        x, _ = next(single)
        assert torch.equal(torch.cat([x0, x1]), x)  # same global batch as one process


def test_windows_reject_too_short_arrays_and_bad_ranks() -> None:
    with pytest.raises(DataError, match="block_size"):
        RandomWindows(np.arange(8, dtype=np.uint16), block_size=8, batch_size=2)
    with pytest.raises(DataError, match="rank"):
        RandomWindows(np.arange(100, dtype=np.uint16), 8, 2, rank=2, world_size=2)


def test_fixed_batches_are_the_same_every_call() -> None:
    tokens = np.arange(2_000, dtype=np.uint16)
    a = fixed_batches(tokens, block_size=8, batch_size=4, n_batches=3, seed=5)
    b = fixed_batches(tokens, block_size=8, batch_size=4, n_batches=3, seed=5)
    assert len(a) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], a[1][0])
