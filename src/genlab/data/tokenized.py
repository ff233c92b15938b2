"""Tokenized text sets for encoders: tokenize with a limit, pad rows into batches, count tokens.

A tokenized set is what a WordPiece tokenizer's ``tokenize`` returns (``ids``, ``type_ids``,
``lengths``, ``truncated``; :class:`genlab.tokenizers.wordpiece.Tokenized`); ``tok.pad(done,
rows)`` pads rows of it. Training batches come from :class:`~genlab.data.batches.ShuffledBatches`
over the set's indices, bucketed by length (less padding), and their padded token counts can be
replayed without building a tensor (the FLOPs of a run are counted per padded token).

Tier 1: the tokenizer is passed in (duck-typed), never imported.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from genlab.core.errors import ConfigError
from genlab.data.batches import ShuffledBatches
from genlab.data.text_tasks import length_sorted_batches

TRUNCATION = ("warn", "error")


def token_limit(requested: int, block_size: int, where: str) -> int:
    """The token limit: ``requested`` (0: the position table), never beyond the position table."""
    if requested < 0:
        raise ConfigError(f"{where}.max_length must be >= 0 (0: the model's {block_size}), got {requested}")
    if requested > block_size:
        raise ConfigError(
            f"{where}.max_length={requested} exceeds the model's position table of {block_size} tokens: "
            f"use at most {block_size} (longer texts are truncated or refused by {where}.truncation)"
        )
    return requested or block_size


def tokenize(tok: Any, texts: Sequence[str | tuple[str, str]], max_length: int, truncation: str, what: str) -> Any:
    """Tokenize with [CLS]/[SEP]; a text over ``max_length`` tokens is cut (``truncation="warn"``,
    with one printed line that counts them) or is a TokenizerError naming it (``"error"``)."""
    if truncation not in TRUNCATION:
        raise ConfigError(f"truncation must be 'warn' or 'error', got {truncation!r}")
    done = tok.tokenize(texts, max_length=max_length, truncation="silent" if truncation == "warn" else "error")
    if done.truncated:
        n = len(done.truncated)
        print(f"warning: {n} of {len(done)} {what} are longer than {max_length} tokens; truncated", file=sys.stderr)
    return done


def collate(tok: Any, done: Any, rows: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Rows of a tokenized set as a padded batch of tensors (labels too, when given)."""
    b = tok.pad(done, rows)
    batch = {
        "input_ids": torch.from_numpy(b.input_ids),
        "attention_mask": torch.from_numpy(b.attention_mask),
        "token_type_ids": torch.from_numpy(b.token_type_ids),
    }
    if labels is not None:
        batch["labels"] = torch.from_numpy(labels[rows])
    return batch


def lengths(done: Any) -> np.ndarray:
    """Tokens of each sequence of a tokenized set, after truncation: int64 (N,)."""
    return np.fromiter((len(s) for s in done.ids), dtype=np.int64, count=len(done))


def real_tokens(batch: dict) -> int:
    """Tokens of a padded batch that are not padding."""
    return int(batch["attention_mask"].sum())


def shuffled_batches(
    tok: Any, done: Any, labels: np.ndarray | None, batch_size: int, seed: int, bucket: int, rank: int = 0,
    world_size: int = 1,
) -> ShuffledBatches:  # fmt: skip
    """Endless training batches of a tokenized set, ``bucket`` batches at a time sorted by length."""
    return ShuffledBatches(
        len(done), batch_size, lambda rows: collate(tok, done, rows, labels), seed=seed, rank=rank,
        world_size=world_size, lengths=lengths(done), bucket=bucket,
    )  # fmt: skip


def eval_batches(tok: Any, done: Any, batch_size: int, device: Any = None, limit: int = 0) -> list[dict]:
    """The whole set in batches of similar length (the first ``limit`` batches; 0: all), on ``device``."""
    out = [{k: v.to(device) for k, v in collate(tok, done, rows).items()}
           for rows in length_sorted_batches(lengths(done), batch_size)]  # fmt: skip
    return out[:limit] if limit else out


def step_tokens(done: Any, batch_size: int, seed: int, bucket: int, grad_accum: int = 1) -> Iterator[int]:
    """Padded tokens of each training step, in order: the training sampler replayed (no tensors built)."""
    n = lengths(done)
    replay = ShuffledBatches(len(done), batch_size, lambda rows: len(rows) * int(n[rows].max()), seed=seed,
                             lengths=n, bucket=bucket)  # fmt: skip
    while True:
        yield sum(next(replay) for _ in range(grad_accum))


def padded_tokens(done: Any, batch_size: int, seed: int, bucket: int, steps: int, grad_accum: int = 1) -> int:
    """Tokens (padding included) of the first ``steps`` steps' batches."""
    tokens = step_tokens(done, batch_size, seed, bucket, grad_accum)
    return sum(next(tokens) for _ in range(steps))


def reference_batch(tok: Any, done: Any, batch_size: int, seed: int, bucket: int, labels: np.ndarray | None = None,
                    collate_rows: Any = None) -> Any:  # fmt: skip
    """The first batch a fresh training sampler draws (not the training sampler: measuring must not
    move it); ``collate_rows(rows)`` replaces :func:`collate` (e.g. query and code batches)."""
    make = collate_rows or (lambda rows: collate(tok, done, rows, labels))
    return next(ShuffledBatches(len(done), batch_size, make, seed=seed, lengths=lengths(done), bucket=bucket))
