"""Sentence embeddings of a BERT encoder: the mean of its last hidden states over each text's
tokens, L2-normalised (:func:`sentence_embeddings`), as sentence-transformers computes
it for MiniLM: the rows are unit vectors and their dot products are cosine similarities.

The texts are tokenized in one parallel call and sorted by token count so that each batch holds
texts of about the same length (little padding), encoded under ``torch.inference_mode`` and
returned in input order. The encoder is passed in (duck-typed: ``model``, ``tokenizer``,
``max_length``; :class:`genlab.runs.encoders.Encoder`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from genlab.core.errors import ConfigError, TokenizerError


def sentence_embeddings(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Sentence embeddings (B, C) through ``model``'s forward (so a compiled module runs compiled),
    as :meth:`genlab.models.bert.Bert.embed` computes them (Sentence-BERT, Reimers & Gurevych 2019):

        e = m^T h / max(sum_t m_t, 1e-9),    embedding = e / max(||e||_2, 1e-12)

    the mean of the last hidden states h (B, T, C) over the real tokens (mask m), L2-normalised."""
    h = model(input_ids, attention_mask, token_type_ids, heads=()).hidden  # (B, T, C)
    m = attention_mask.to(h.dtype)  # (B, T)
    e = torch.bmm(m[:, None, :], h).squeeze(1) / m.sum(1, keepdim=True).clamp(min=1e-9)  # (B, C)
    return F.normalize(e, p=2, dim=-1)


def embed_texts(
    encoder: Any,
    texts: list[str],
    batch_size: int = 32,
    max_length: int | None = None,
    truncate: bool = True,
    progress: bool = False,
    name: str = "text",
    pool: Callable[..., torch.Tensor] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Embeddings (N, C) float32 of ``texts``, and the indices of the texts that were truncated.

    ``pool`` (model, input_ids, attention_mask, token_type_ids) -> (B, C) replaces
    :func:`sentence_embeddings` for each batch (a faster path that computes the same vectors).

    A text longer than ``max_length`` tokens (default: the encoder's) is cut to it, or raises a
    TokenizerError when ``truncate`` is false; a text with no tokens raises one too. Errors call
    text i "``name`` i+1" (``genlab embed`` says "line 7 of texts.txt").
    """
    cfg = encoder.model.config
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    limit = encoder.max_length if max_length is None else max_length
    if limit > cfg.block_size:
        raise ConfigError(
            f"max length {limit} exceeds the model's position table of {cfg.block_size} tokens: use at most that"
        )
    if limit < 3:
        raise ConfigError(f"max length {limit} leaves no room for a token between [CLS] and [SEP]: use at least 3")
    tok = encoder.tokenizer
    done = tok.tokenize(texts, max_length=limit, truncation="silent")
    too_long = done.truncated
    if too_long and not truncate:
        i = too_long[0]
        raise TokenizerError(
            f"{name} {i + 1} has {done.lengths[i]} tokens, more than the limit of {limit}"
            f"{f' ({len(too_long)} texts are too long)' if len(too_long) > 1 else ''}: "
            "shorten it, or allow truncation (--truncate)"
        )
    n_special = len(tok.encode("", add_special_tokens=True))  # [CLS] [SEP]
    empty = np.flatnonzero(done.lengths <= n_special).tolist()
    if empty:
        raise TokenizerError(
            f"{name} {empty[0] + 1} has no tokens once normalised (only control or invisible characters?)"
            f"{f' and {len(empty) - 1} more' if len(empty) > 1 else ''}: it has no embedding"
        )
    n = len(texts)
    out = np.empty((n, cfg.n_embd), dtype=np.float32)
    kept = np.fromiter((len(s) for s in done.ids), dtype=np.int64, count=n)
    order = np.argsort(-kept, kind="stable")  # longest first: similar lengths share a batch
    model = encoder.model.eval()
    with torch.inference_mode(), tqdm(total=n, unit="text", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            batch = tok.pad(done, rows)
            ids = torch.from_numpy(batch.input_ids)
            mask = torch.from_numpy(batch.attention_mask)
            types = torch.from_numpy(batch.token_type_ids)
            out[rows] = (pool or sentence_embeddings)(model, ids, mask, types).float().numpy()
            bar.update(len(rows))
    return out, too_long
