"""``genlab rag``: ingest sources into an index, query it, evaluate its retrieval.

    genlab rag ingest /usr/share/doc/python3-doc/html/_sources --index py.rag
    genlab rag query py.rag "Why does Python use indentation?" --mode hybrid -k 5
    genlab rag questions python-faq faq-test.jsonl --split test
    genlab rag eval py.rag faq-test.jsonl

An evaluation file is JSON lines ``{"question": ..., "gold": DOC_ID}`` or
``{"question": ..., "gold": {"doc_id": ..., "section": ...}}``. A retrieved chunk matches the gold
when its document id equals ``doc_id`` (or one ends with the other at a ``/``: the same file
ingested from another root) and, when a section is given, its heading path ends with it. The
rank of a question is that of its first matching chunk in the top ``max(ks)``; recall@k is the
share of questions ranked at most k, MRR the mean of 1/rank (0 when not found: MRR@max(ks)).

Answer metrics (exact match, token F1, groundedness) come from :mod:`genlab.rag.answer` through
the ``answer`` hook of :func:`evaluate`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from genlab.core.errors import ConfigError, DataError, GenlabError
from genlab.data.chat import iter_jsonl, python_faq_pairs, split_of, write_jsonl
from genlab.data.sources import PYTHON_DOC_SOURCES
from genlab.rag.embed import load_rag_encoder
from genlab.rag.ingest import IngestReport, find_files, model_info, read_file
from genlab.rag.ingest import ingest as ingest_into
from genlab.rag.retrieve import BM25_WEIGHT, FUSION, MODES, RRF_K, Retriever
from genlab.rag.store import Store, is_index
from genlab.rag.types import Chunk, Hit

KS = (1, 5, 20)


# ------------------------------------------------------------------------------- ingest


def ingest(
    sources: Sequence[str | os.PathLike],
    index: str | os.PathLike,
    model: str = "minilm",
    max_tokens: int = 200,
    overlap: int = 32,
    batch_size: int = 32,
    progress: bool = True,
    headings: bool = True,
) -> IngestReport:
    """Create or update the index ``index`` from ``sources`` (:func:`genlab.rag.ingest.ingest`).

    Bad input (a missing source, a source file that is not text, a folder with no document, a
    model other than the index's) is refused before anything is written; a new index folder is
    removed again when its first ingest fails."""
    index = Path(index).expanduser()
    found = find_files(sources)  # a missing source raises here, before the index is touched
    if not found.files:
        raise DataError(f"no documents found in {', '.join(map(str, sources))}: it holds no text, Markdown, reST, "
                        "HTML, man or dictd files")  # fmt: skip
    for f in found.files:
        if f.path.resolve() in {Path(s).expanduser().resolve() for s in sources}:
            read_file(f, "", strict=True)  # a named file that is not text raises here
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    created = not is_index(index)
    if created and index.exists() and (not index.is_dir() or any(index.iterdir())):
        raise DataError(f"{index} exists and is not a genlab rag index: choose another --index")
    encoder = load_rag_encoder(model)
    try:
        with Store.open(index, create=True) as store:
            return ingest_into(store, encoder, sources, model, max_tokens, overlap, batch_size, progress=progress,
                               headings=headings)  # fmt: skip
    except GenlabError:
        if created:
            shutil.rmtree(index, ignore_errors=True)
        raise


# -------------------------------------------------------------------------------- query


def open_retriever(index: str | os.PathLike, model: str | None = None) -> Retriever:
    """A retriever over ``index`` with the model it was built with (or ``model``, which must match)."""
    store = Store.open(index)
    info = store.model()
    if info is None:
        raise DataError(f"{index} holds no documents yet: genlab rag ingest SOURCE --index {index}")
    arg = model or info.arg
    encoder = load_rag_encoder(arg)
    return Retriever(store, encoder, model_info(encoder, arg))


def query(
    index: str | os.PathLike,
    question: str,
    mode: str = "hybrid",
    k: int = 5,
    doc: str | None = None,
    source: str | None = None,
    model: str | None = None,
    rrf_k: float = RRF_K,
    bm25_weight: float = BM25_WEIGHT,
    fusion: str = FUSION,
) -> list[Hit]:
    retriever = open_retriever(index, model)
    try:
        return retriever.search(question, mode, k, doc, source, rrf_k, bm25_weight=bm25_weight, fusion=fusion)
    finally:
        retriever.store.close()


def format_hits(hits: Sequence[Hit], width: int = 300) -> str:
    """Hits as the CLI prints them: rank, score, citation, then the passage (cut at ``width``)."""
    if not hits:
        return "no matching passage"
    out = []
    for h in hits:
        text = " ".join(h.chunk.text.split())
        text = text if len(text) <= width else text[: width - 1] + "…"
        out.append(f"[{h.rank}] {h.score:.4f}  {h.chunk.citation()}\n    {text}")
    return "\n".join(out)


# --------------------------------------------------------------------------- evaluation


def read_questions(path: str | os.PathLike) -> list[dict]:
    """Rows ``{"question", "gold": {"doc_id", "section" or None}}`` of an evaluation file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f'{path} is not a file: give a JSONL file of {{"question", "gold"}} rows')
    rows = []
    for n, row in iter_jsonl(path):
        q, gold = row.get("question"), row.get("gold")
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{path} line {n}: 'question' must be a non-empty string")
        if isinstance(gold, str):
            gold = {"doc_id": gold, "section": None}
        elif isinstance(gold, dict) and isinstance(gold.get("doc_id"), str):
            gold = {"doc_id": gold["doc_id"], "section": gold.get("section")}
        else:
            raise DataError(f'{path} line {n}: \'gold\' must be a document id or {{"doc_id", "section"}}')
        rows.append({**row, "question": q, "gold": gold})
    if not rows:
        raise DataError(f"{path} holds no questions")
    return rows


def _same_doc(a: str, b: str) -> bool:
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def matches(chunk: Chunk, gold: dict) -> bool:
    """Whether a retrieved chunk is (part of) the gold document and section."""
    if not _same_doc(chunk.doc_id, gold["doc_id"]):
        return False
    section = gold.get("section")
    return not section or chunk.section == section or chunk.section.endswith(" > " + section)


def rank_of(hits: Sequence[Hit], gold: dict) -> int | None:
    return next((h.rank for h in hits if matches(h.chunk, gold)), None)


def retrieval_metrics(ranks: Sequence[int | None], ks: Sequence[int] = KS) -> dict[str, float]:
    """recall@k for each k and MRR@max(ks) from 1-based ranks (None: not in the top max(ks))."""
    if not ranks:
        raise ValueError("no questions to score")
    top = max(ks)
    r = np.asarray([np.inf if x is None or x > top else x for x in ranks], dtype=np.float64)
    out = {f"recall@{k}": float((r <= k).mean()) for k in ks}
    out[f"mrr@{top}"] = float(np.where(np.isfinite(r), 1.0 / r, 0.0).mean())
    return out


def evaluate_retriever(
    retriever: Retriever,
    rows: Sequence[dict],
    modes: Sequence[str] = MODES,
    ks: Sequence[int] = KS,
    rrf_k: float = RRF_K,
    depth: int = 100,
    bm25_weight: float = BM25_WEIGHT,
    fusion: str = FUSION,
    vectors: np.ndarray | None = None,
) -> dict:
    """{mode: metrics} over ``rows`` (:func:`read_questions`); each question is embedded once
    (or ``vectors`` (N, C) are their embeddings already, when a caller scores many settings)."""
    from genlab.eval.embeddings import embed_texts

    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown retrieval mode '{m}': use one of {', '.join(MODES)}")
    enc = retriever.encoder
    if vectors is None:
        vectors = embed_texts(enc, [r["question"] for r in rows], 32, enc.max_length, True)[0]
    out = {}
    for m in modes:
        ranks = []
        for r, v in zip(rows, vectors):
            hits = retriever.search(r["question"], m, max(ks), rrf_k=rrf_k, depth=depth, query_vector=v[None],
                                    bm25_weight=bm25_weight, fusion=fusion)  # fmt: skip
            ranks.append(rank_of(hits, r["gold"]))
        out[m] = retrieval_metrics(ranks, ks)
    return out


def evaluate(
    index: str | os.PathLike,
    questions: str | os.PathLike,
    modes: Sequence[str] = MODES,
    ks: Sequence[int] = KS,
    rrf_k: float = RRF_K,
    model: str | None = None,
    answer: Callable[[Retriever, list[dict]], dict] | None = None,
    bm25_weight: float = BM25_WEIGHT,
    fusion: str = FUSION,
) -> dict:
    """Retrieval metrics of ``index`` on an evaluation file; ``answer`` (the answer helper's hook:
    retriever and rows -> answer metrics) adds its result under ``"answer"``."""
    rows = read_questions(questions)
    retriever = open_retriever(index, model)
    try:
        metrics = evaluate_retriever(retriever, rows, modes, ks, rrf_k, bm25_weight=bm25_weight, fusion=fusion)
        result = {"index": str(index), "questions": len(rows), "file": str(questions), "fusion": fusion,
                  "rrf_k": rrf_k, "bm25_weight": bm25_weight, "retrieval": metrics}  # fmt: skip
        if answer is not None:
            result["answer"] = answer(retriever, rows)
        return result
    finally:
        retriever.store.close()


# ----------------------------------------------------------------------- question sets

QUESTION_SETS = ("python-faq",)
SPLIT_NAMES = ("validation", "test", "train", "all")


def python_faq_questions(split: str = "test", sources_dir: Path = PYTHON_DOC_SOURCES) -> list[dict]:
    """Python FAQ questions (real, from Debian python3-doc) with their FAQ file and heading as gold.

    The split of each question is :func:`genlab.data.chat.split_of` of its ``python-faq`` item, the
    same split the chat data uses (train 90%, validation 5%, test 5%)."""
    if split not in SPLIT_NAMES:
        raise ConfigError(f"unknown split '{split}': use one of {', '.join(SPLIT_NAMES)}")
    if not (sources_dir / "faq").is_dir():
        raise DataError(f"{sources_dir / 'faq'} is missing: install the Debian package python3-doc")
    rows = []
    for r in python_faq_pairs(sources_dir):
        s = split_of(f"{r['source']}:{r['item']}")
        if split in ("all", s):
            file = r["item"].split("#", 1)[0]
            rows.append({"question": r["prompt"], "gold": {"doc_id": f"faq/{file}", "section": r["prompt"]},
                         "answer": r["answer"], "split": s, "kind": "real"})  # fmt: skip
    return rows


def write_questions(name: str, output: str | os.PathLike, split: str = "test") -> tuple[Path, int]:
    if name not in QUESTION_SETS:
        raise ConfigError(f"unknown question set '{name}': use one of {', '.join(QUESTION_SETS)}")
    rows = python_faq_questions(split)
    return write_jsonl(output, rows), len(rows)
