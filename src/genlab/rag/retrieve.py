"""Retrieval over an index: dense (FAISS), lexical (bm25s) and hybrid by fusing the two.

- dense: the question's unit MiniLM embedding against every chunk's, by inner product (= cosine);
- bm25: Okapi BM25 (Robertson & Zaragoza 2009) of bm25s over the same chunk texts;
- hybrid: the two rankings, each cut at ``depth``, fused by one of :data:`FUSIONS`, with a weight
  w (``bm25_weight``) on the lexical side and 1 on the dense side:

  ``rrf``, weighted reciprocal rank fusion (Cormack, Clarke & Büttcher 2009)::

      RRF(d) = 1 / (k + rank_dense(d)) + w / (k + rank_bm25(d))     (rank 1-based; k = 60 in the paper)

  a chunk missing from a ranking adds nothing for it;

  ``minmax`` and ``zscore``, a convex combination of normalised scores (Bruch, Gai & Ingber 2023,
  "An Analysis of Fusion Functions for Hybrid Retrieval", arXiv:2210.11934)::

      S(d) = (N(s_dense(d)) + w N(s_bm25(d))) / (1 + w)               (alpha = w / (1 + w) on BM25)
      minmax: N(s) = (s - min s) / (max s - min s)                   (1 when every score is equal)
      zscore: N(s) = (s - mean s) / std s                           (0 when every score is equal)

  with min, max, mean and std over that retriever's own top ``depth`` and its floor, the score a
  chunk missing from the ranking is given: 0 for BM25 (a chunk with no query word scores 0; BM25
  keeps only hits above 0), the lowest kept cosine for dense (a missing chunk scored at most that).
  RRF throws the score gaps away, so a much weaker ranking (BM25 here) pulls a stronger one down
  as hard as it is pulled up; the convex combination keeps how far ahead the top hits are.

The defaults (:data:`FUSION`, :data:`BM25_WEIGHT`) were tuned on the Python FAQ questions' train
and validation splits, never on test (``benchmarks/rag.py``; the README gives the figures).

Filters: ``doc`` (a glob on document ids, ``faq/*``) and ``source`` (a glob on source roots)
restrict every retriever to the matching chunks (FAISS through an id selector, bm25s through a
weight mask), so the top-k are the best *matching* chunks, not a filtered top-k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genlab.core.errors import ConfigError, TokenizerError
from genlab.rag.store import ModelInfo, Store, _faiss, bm25_tokenize
from genlab.rag.types import Hit

MODES = ("dense", "bm25", "hybrid")
RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: float = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse rankings (each a list of ids, best first) into [(id, score)], best first.

    score(d) = sum_r w_r / (k + rank_r(d)), rank 1-based; ties go to the id seen first (in the
    first ranking, then the next), so the result is deterministic."""
    if k < 0:
        raise ValueError(f"RRF k must be non-negative, got {k}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    score: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for r, d in enumerate(ranking, start=1):
            score[d] = score.get(d, 0.0) + w / (k + r)
    order = {d: i for i, d in enumerate(score)}  # first appearance
    return sorted(score.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def _normalise(scores: np.ndarray, floor: float, how: str) -> tuple[np.ndarray, float]:
    """A ranking's kept scores and its floor (the score a missing id gets), normalised together:
    ``minmax`` to [0, 1], ``zscore`` to mean 0, std 1, over the kept scores and the floor."""
    s = np.append(scores, floor).astype(np.float64)
    if how == "minmax":
        span = s.max() - s.min()
        n = (s - s.min()) / span if span > 0 else np.ones_like(s)
    else:
        std = s.std()
        n = (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    return n[:-1], float(n[-1])


def convex_fusion(
    rankings: Sequence[tuple[Sequence[int], Sequence[float]]],
    weights: Sequence[float] | None = None,
    norm: str = "minmax",
    floors: Sequence[float | None] | None = None,
) -> list[tuple[int, float]]:
    """Fuse scored rankings (each (ids, scores), best first) into [(id, score)], best first.

    score(d) = sum_r w_r N_r(d) / sum_r w_r, N_r the ``norm`` (minmax or zscore) of ranking r's
    scores. An id missing from ranking r gets r's floor: ``floors[r]``, or its lowest kept score
    when None (a cut ranking: a missing id scored at most that); BM25 knows better, as a chunk
    with no query word scores 0. The floor is normalised with the kept scores (so a ranking of one
    hit still tells it from the rest). An empty ranking adds nothing (its weight leaves the sum
    too). Ties go to the id seen first, as in :func:`reciprocal_rank_fusion`."""
    if norm not in ("minmax", "zscore"):
        raise ValueError(f"unknown score normalisation '{norm}': use minmax or zscore")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    floors = [None] * len(rankings) if floors is None else list(floors)
    if len(weights) != len(rankings) or len(floors) != len(rankings):
        raise ValueError(f"{len(weights)} weights and {len(floors)} floors for {len(rankings)} rankings")
    if any(w < 0 for w in weights):
        raise ValueError(f"fusion weights must be non-negative, got {weights}")
    for ids, sc in rankings:
        if len(ids) != len(sc):
            raise ValueError(f"a ranking has {len(ids)} ids and {len(sc)} scores")
    used = []
    for (ids, sc), w, floor in zip(rankings, weights, floors):
        if len(ids):
            sc = np.asarray(sc, dtype=np.float64)
            used.append((ids, *_normalise(sc, sc.min() if floor is None else min(floor, sc.min()), norm), w))
    total = sum(w for *_, w in used)
    order: dict[int, int] = {}
    for ids, *_ in used:
        for d in ids:
            order.setdefault(d, len(order))
    if not order:
        return []
    fused = np.zeros(len(order))
    for ids, n, missing, w in used:
        col = np.full(len(order), missing)
        col[[order[d] for d in ids]] = n
        fused += w * col
    fused /= total if total > 0 else 1.0
    return sorted(zip(order, fused.tolist()), key=lambda kv: (-kv[1], order[kv[0]]))


#: Hybrid fusions by name: (dense (ids, scores), bm25 (ids, scores), bm25 weight, rrf k) -> [(id, score)].
FUSIONS = {
    "rrf": lambda dense, lexical, w, k: reciprocal_rank_fusion([dense[0], lexical[0]], k, [1.0, w]),
    "minmax": lambda dense, lexical, w, k: convex_fusion([dense, lexical], [1.0, w], "minmax", [None, 0.0]),
    "zscore": lambda dense, lexical, w, k: convex_fusion([dense, lexical], [1.0, w], "zscore", [None, 0.0]),
}
# The default hybrid: the best MRR@20 on the Python FAQ questions' train + validation splits (169
# questions, text-only chunks; grid: rrf k 5/20/60, minmax, zscore x w 0.05-1), never the test split.
FUSION = "zscore"
BM25_WEIGHT = 0.2


class Retriever:
    """Dense, BM25 and hybrid search over an open :class:`Store`, with ``encoder`` for queries.

    The encoder must be the one the index was built with (name, dim and tokenizer): another is a
    ConfigError that names both."""

    def __init__(self, store: Store, encoder, info: ModelInfo) -> None:
        built = store.model()
        if built is None:
            raise ConfigError(f"{store.root} holds no documents yet: ingest some first")
        if (built.name, built.dim, built.tokenizer_sha256) != (info.name, info.dim, info.tokenizer_sha256):
            raise ConfigError(
                f"{store.root} was built with embeddings of {built.name} (dim {built.dim}); the query model is "
                f"{info.name} (dim {info.dim}): query with --embed-model {built.arg}, or ingest again with this model"
            )
        self.store = store
        self.encoder = encoder

    # ----------------------------------------------------------------------- query
    def embed_query(self, question: str) -> np.ndarray:
        """(1, C) unit embedding of ``question``; a question over the encoder's limit is refused."""
        from genlab.eval.embeddings import embed_texts

        if not question.strip():
            raise ConfigError("the question is empty: ask something")
        limit = self.encoder.max_length
        n = len(self.encoder.tokenizer.encode(question, add_special_tokens=True))
        if n > limit:
            raise TokenizerError(f"the question has {n} tokens, more than the embedding model's {limit}: shorten it")
        return embed_texts(self.encoder, [question], 1, limit, False)[0]

    def _hits(self, ids: Sequence[int], scores: Sequence[float]) -> list[Hit]:
        chunks = self.store.chunks(ids)
        return [Hit(chunks[i], float(s), r) for r, (i, s) in enumerate(zip(ids, scores), start=1) if i in chunks]

    def dense_ranking(
        self, question: str | np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[list[int], list[float]]:
        index = self.store.dense()
        q = self.embed_query(question) if isinstance(question, str) else question
        if index is None or index.ntotal == 0 or (allowed is not None and not len(allowed)):
            return [], []
        faiss = _faiss()
        params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, ids = index.search(np.ascontiguousarray(q, dtype=np.float32), min(k, index.ntotal), params=params)
        keep = ids[0] >= 0
        return ids[0][keep].tolist(), scores[0][keep].tolist()

    def bm25_ranking(self, question: str, k: int, allowed: np.ndarray | None) -> tuple[list[int], list[float]]:
        retriever, row_ids = self.store.bm25()
        if retriever is None:
            return [], []
        tokens = bm25_tokenize([question])
        vocab = {i: t for t, i in tokens.vocab.items()}
        words = [vocab[i] for i in tokens.ids[0] if vocab[i] in retriever.vocab_dict]
        if not words:
            return [], []
        mask = None
        if allowed is not None:
            mask = np.isin(row_ids, allowed).astype(np.float32)
            if not mask.any():
                return [], []
        docs, scores = retriever.retrieve([words], k=min(k, len(row_ids)), show_progress=False, weight_mask=mask)
        keep = scores[0] > 0
        return row_ids[docs[0][keep]].tolist(), scores[0][keep].tolist()

    def search(
        self,
        question: str,
        mode: str = "hybrid",
        k: int = 5,
        doc: str | None = None,
        source: str | None = None,
        rrf_k: float = RRF_K,
        depth: int = 100,
        query_vector: np.ndarray | None = None,
        bm25_weight: float = BM25_WEIGHT,
        fusion: str = FUSION,
    ) -> list[Hit]:
        """The top ``k`` chunks for ``question`` under ``mode`` (dense, bm25, hybrid), with scores
        (cosine, BM25 score, fused score) and ranks. ``query_vector`` skips embedding (evaluation);
        hybrid fuses the two rankings by ``fusion`` (a key of :data:`FUSIONS`), ``bm25_weight``
        weighing the BM25 side against the dense one (weight 1); ``rrf_k`` is RRF's k."""
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode '{mode}': use one of {', '.join(MODES)}")
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion '{fusion}': use one of {', '.join(FUSIONS)}")
        if bm25_weight < 0:
            raise ConfigError(f"the BM25 weight must be non-negative, got {bm25_weight}")
        if rrf_k < 0:
            raise ConfigError(f"the RRF k must be non-negative, got {rrf_k}")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if not question.strip():
            raise ConfigError("the question is empty: ask something")
        allowed = self.store.filter_ids(doc, source)
        q = query_vector if query_vector is not None else (self.embed_query(question) if mode != "bm25" else None)
        if mode == "dense":
            return self._hits(*self.dense_ranking(q, k, allowed))
        if mode == "bm25":
            return self._hits(*self.bm25_ranking(question, k, allowed))
        deep = max(depth, k)
        dense = self.dense_ranking(q, deep, allowed)
        lexical = self.bm25_ranking(question, deep, allowed)
        fused = FUSIONS[fusion](dense, lexical, bm25_weight, rrf_k)[:k]
        return self._hits([i for i, _ in fused], [s for _, s in fused])
