"""Token streams: a corpus encoded once, stored as a memory-mapped array, sampled in windows.

Language-model training reads random windows of a long token sequence. Keeping the
sequence as a flat ``np.memmap`` on disk (as nanoGPT's ``train.bin``) means it is encoded
once, shared by every DDP process through the page cache, and never copied into each
process's memory.

Shapes: B batch size, T block size (context length). A batch is ``(x, y)``, both
``(B, T)`` int64, with ``y[b, t] == x[b, t + 1]``: the target at each position is the next
token.

Files: ``<name>.bin`` holds the raw ids (uint16 when the vocabulary fits, else uint32) and
``<name>.bin.json`` a sidecar with dtype, length, vocab size and a fingerprint of the text
and the tokenizer; a cached stream is reused only when that fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from genlab.core.errors import DataError
from genlab.core.paths import cache_dir
from genlab.data.sources import read_text

# Bump when the file layout changes, so old caches are rebuilt rather than misread.
_FORMAT_VERSION = 1
_UINT16_MAX_VOCAB = 65535


class Encoder(Protocol):
    """What a token stream needs from a tokenizer (both genlab tokenizers qualify)."""

    @property
    def vocab_size(self) -> int: ...

    def encode_np(self, text: str) -> np.ndarray: ...

    def fingerprint(self) -> str: ...


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def stream_fingerprint(text: str, tokenizer: Encoder) -> str:
    """sha256 over the text's sha256 and the tokenizer's fingerprint."""
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    key = f"genlab-tokens-v{_FORMAT_VERSION}:{text_sha}:{tokenizer.fingerprint()}"
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _open_memmap(path: Path, dtype: str, length: int) -> np.memmap:
    return np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=(length,))


def encode_to_memmap(text: str, tokenizer: Encoder, path: Path) -> np.memmap:
    """Encode ``text`` and store the ids at ``path`` (plus the ``.json`` sidecar), atomically.

    Returns the read-only memory map of the written file.
    """
    path = Path(path)
    ids = np.asarray(tokenizer.encode_np(text))
    if ids.size == 0:
        raise DataError("the text encodes to no tokens: give a non-empty corpus")
    vocab = int(tokenizer.vocab_size)
    dtype = np.dtype(np.uint16 if vocab <= _UINT16_MAX_VOCAB else np.uint32)
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise DataError(f"the tokenizer produced ids outside [0, {vocab}): check its vocab_size")
    meta = {
        "format": _FORMAT_VERSION,
        "dtype": dtype.name,
        "length": int(ids.size),
        "vocab_size": vocab,
        "fingerprint": stream_fingerprint(text, tokenizer),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{os.getpid()}"
    tmp_data = path.with_name(path.name + suffix)
    tmp_meta = path.with_name(_sidecar(path).name + suffix)
    ids.astype(dtype).tofile(tmp_data)
    tmp_meta.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    # Data first, then the sidecar that vouches for it: a crash in between leaves a
    # sidecar that does not match, and the stream is rebuilt next time.
    os.replace(tmp_data, path)
    os.replace(tmp_meta, _sidecar(path))
    return _open_memmap(path, dtype.name, ids.size)


def load_memmap(path: Path, fingerprint: str | None = None) -> np.memmap | None:
    """The stored stream at ``path`` if its sidecar is intact (and matches ``fingerprint``)."""
    path = Path(path)
    try:
        meta = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        length = int(meta["length"])
        ok = (
            meta.get("format") == _FORMAT_VERSION
            and dtype in (np.dtype(np.uint16), np.dtype(np.uint32))
            and length > 0
            and path.stat().st_size == length * dtype.itemsize
            and (fingerprint is None or meta.get("fingerprint") == fingerprint)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _open_memmap(path, dtype.name, length) if ok else None


def _stream_name(text_source: str) -> str:
    """A readable, collision-free file stem for a source name or a path."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(text_source).name).strip("_") or "text"
    if text_source == Path(text_source).name:  # a bare name such as "shakespeare"
        return stem
    where = hashlib.sha256(str(Path(text_source).expanduser().resolve()).encode()).hexdigest()[:8]
    return f"{stem}-{where}"


def token_stream(text_source: str, tokenizer: Encoder, cache: Path | None = None) -> np.memmap:
    """The token ids of a source (name, file or folder), encoded once and cached.

    The stream lives in the folder ``cache`` (default ``cache_dir()/"tokens"``) as
    ``<source>-<tokenizer fingerprint>.bin``; it is re-encoded when the text has changed.
    """
    text = read_text(text_source)
    folder = Path(cache) if cache is not None else cache_dir() / "tokens"
    path = folder / f"{_stream_name(text_source)}-{tokenizer.fingerprint()[:12]}.bin"
    cached = load_memmap(path, stream_fingerprint(text, tokenizer))
    if cached is not None:
        return cached
    return encode_to_memmap(text, tokenizer, path)


def split(tokens: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` views in file order: the first ``1 - val_fraction`` and the rest.

    A contiguous tail (not a random subset) keeps validation windows from overlapping the
    training text, as nanoGPT does.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must be in [0, 1): e.g. 0.1 for a 10% tail")
    n_val = int(round(len(tokens) * val_fraction))
    n_train = len(tokens) - n_val
    return tokens[:n_train], tokens[n_train:]


class RandomWindows:
    """Endless batches of random windows: ``(x, y)`` int64 tensors of shape ``(B, T)``.

    Every window start in ``[0, N - T - 1]`` is equally likely. Draws come from a
    ``torch.Generator`` seeded with ``seed``, and :meth:`state_dict` /
    :meth:`load_state_dict` save and restore it so a resumed run sees exactly the batches
    it would have seen.

    Data parallel: each of ``world_size`` ranks passes its ``rank`` and its own
    ``batch_size``. All ranks draw the same ``world_size * batch_size`` starts and each
    keeps its own slice, so ranks get different, deterministic sub-batches whose union is
    the batch a single process with the global batch size would draw: the loss curve of
    an N-process run matches the 1-process one, and a run can resume on a different
    number of processes.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if block_size < 1 or batch_size < 1:
            raise DataError(f"block_size={block_size} and batch_size={batch_size} must be positive")
        if not 0 <= rank < world_size:
            raise DataError(f"rank={rank} must be in [0, world_size={world_size})")
        if len(tokens) < block_size + 1:
            raise DataError(
                f"the token array has {len(tokens)} tokens, fewer than block_size + 1 = "
                f"{block_size + 1}: use a smaller block_size or more text"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = np.arange(block_size + 1, dtype=np.int64)  # (T+1,)

    def __iter__(self) -> RandomWindows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.batch_size, self.block_size
        n_starts = len(self.tokens) - T  # valid starts: 0 .. N-T-1
        starts = torch.randint(n_starts, (self.world_size * B,), generator=self.generator)
        mine = starts[self.rank * B : (self.rank + 1) * B].numpy()  # (B,)
        index = mine[:, None] + self._offsets[None, :]  # (B, T+1)
        chunk = torch.from_numpy(np.asarray(self.tokens[index], dtype=np.int64))  # (B, T+1)
        self.step += 1
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # (B, T), (B, T)

    def state_dict(self) -> dict:
        """Generator state and step count (plus the shape the stream was drawn with)."""
        return {
            "generator": self.generator.get_state(),
            "step": self.step,
            "block_size": self.block_size,
            "global_batch_size": self.batch_size * self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`: the next batches equal the saved run's."""
        saved = (state.get("block_size"), state.get("global_batch_size"))
        ours = (self.block_size, self.batch_size * self.world_size)
        if saved != ours:
            raise DataError(
                f"the saved data stream used block_size, global batch {saved}, not {ours}: "
                "resume with the same block size and global batch size"
            )
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])


def fixed_batches(
    tokens: np.ndarray,
    block_size: int,
    batch_size: int,
    n_batches: int,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same ``n_batches`` random windows every call: an evaluation set for a run."""
    windows = RandomWindows(tokens, block_size, batch_size, seed=seed, rank=rank, world_size=world_size)
    return [next(windows) for _ in range(n_batches)]
