"""Ranking metrics for retrieval: mean reciprocal rank and recall@k.

Axes: Q queries, N candidates. ``scores[q, n]`` is how well candidate n answers query q (e.g. the
cosine of their embeddings) and ``target[q]`` the one right candidate. The rank of the right
answer counts the candidates scored strictly higher, so ties are resolved in its favour::

    rank_q     = 1 + |{n : scores[q, n] > scores[q, target_q]}|
    MRR        = (1/Q) sum_q 1 / rank_q
    recall@k   = (1/Q) sum_q 1[rank_q <= k]

(Voorhees 1999 for MRR; with one relevant item per query recall@k is also called success@k or
hit rate, the CodeSearchNet / CodeBERT reporting convention.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from genlab.core.errors import ConfigError
from genlab.eval.embeddings import embed_texts


def ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """scores (Q, N), target (Q,) int -> 1-based rank (Q,) of each query's right candidate."""
    if scores.dim() != 2 or target.shape != scores.shape[:1]:
        raise ValueError(f"need scores (Q, N) and target (Q,), got {tuple(scores.shape)} and {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= scores.shape[1]):
        raise ValueError(f"target indices must lie in [0, {scores.shape[1]})")
    right = scores.gather(1, target[:, None].long())  # (Q, 1)
    return 1 + (scores > right).sum(1)


def ranking_metrics(
    scores: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 10), chunk: int = 1024
) -> dict[str, float]:
    """{"mrr", "recall@k" for each k, "queries"} of ``scores`` (Q, N) against ``target`` (Q,),
    computed ``chunk`` queries at a time."""
    if scores.shape[0] == 0:
        raise ValueError("no queries to score")
    r = torch.cat([ranks(scores[i : i + chunk], target[i : i + chunk]) for i in range(0, scores.shape[0], chunk)])
    out = {"mrr": (1.0 / r.double()).mean().item()}
    for k in ks:
        out[f"recall@{k}"] = (r <= k).double().mean().item()
    out["queries"] = int(r.numel())
    return out


#: Default token limit of code search, for every model alike (MiniLM's own is 256).
CODE_SEARCH_MAX_LENGTH = 128


def code_search(encoder: Any, pairs: Sequence[Any], batch_size: int = 64, max_length: int | None = None) -> dict:
    """Rank every code of ``pairs`` (:class:`genlab.data.code.CodePair`) for each docstring query by
    the cosine of their mean-pooled, normalised embeddings (:func:`genlab.eval.embeddings.embed_texts`);
    MRR and recall@1/5/10 (query i's right answer is code i). ``encoder``: model, tokenizer,
    max_length and source (:class:`genlab.runs.encoders.Encoder`)."""
    if not pairs:
        raise ConfigError("no code-search pairs to rank")
    limit = min(CODE_SEARCH_MAX_LENGTH, encoder.max_length) if max_length is None else max_length
    q, _ = embed_texts(encoder, [p.query for p in pairs], batch_size, limit, True, name="query")
    c, cut = embed_texts(encoder, [p.code for p in pairs], batch_size, limit, True, name="code")
    scores = torch.from_numpy(q) @ torch.from_numpy(c).T  # (Q, N) cosines: the rows are unit vectors
    metrics = ranking_metrics(scores, torch.arange(len(pairs)), ks=(1, 5, 10))
    return {"task": "code-search", "model": encoder.source, **metrics, "candidates": len(pairs),
            "max_length": limit, "truncated_codes": len(cut)}  # fmt: skip
