"""Hallucination, closed- vs open-book, for the extractive and the generative reader: one JSON object.

    python benchmarks/rag_trust.py --index KB --reader runs/reader --chat runs/chat-sft
    python benchmarks/rag_trust.py --index KB --reader runs/reader --llm-url http://127.0.0.1:8000/v1 --model chat

KB is a ``genlab rag ingest`` index holding the Python FAQ (python3-doc's ``_sources/faq``) and
dict-elements. Questions (:func:`genlab.rag.trust.held_out_questions`): the Python FAQ test split
(real questions, the FAQ answer the gold passage) and every element fact whose element is not in
the validation split (templated; neither reader trains on elements). The abstention threshold of
each open-book reader is tuned on the validation split (Python FAQ validation questions and the
validation elements), never on test. Conditions:

- extractive, random passage: the reader over one chunk of the KB drawn at random (closed-book
  is not defined for a reader that can only copy a span; this is its no-retrieval baseline);
- extractive, open-book: the reader over the top-k hybrid hits, without and with the threshold;
- generative, closed-book: the chat model alone (the same system prompt style, no passages);
- generative, open-book: the chat model over the top-k hits, without and with the threshold.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

from genlab.rag.answer import NOT_IN_KB, Answer, OpenAIChat, RunChat, answer, closed_book, should_abstain
from genlab.rag.reader import ExtractiveReader
from genlab.rag.trust import format_table, held_out_questions, random_passage, trust_table, tune_abstention
from genlab.recipes.rag import open_retriever


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--reader", default="", help="a reader run (genlab train rag/reader)")
    ap.add_argument("--chat", default="", help="a genlab chat run (in process)")
    ap.add_argument("--llm-url", default="", help="an OpenAI-compatible endpoint instead of --chat")
    ap.add_argument("--model", default="", help="the endpoint's model name")
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--chat-k", type=int, default=2, help="passages for the generative reader (its context is small)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument(
        "--max-prompt-chars", type=int, default=None, help="--llm-url: fit the passages to this many characters"
    )
    ap.add_argument("--limit", type=int, default=0, help="test questions per source, the first ones (0: all)")
    args = ap.parse_args()

    retriever = open_retriever(args.index)
    cache: dict[tuple[str, int], list] = {}

    def retrieve(k: int):
        def run(question: str):
            if (question, k) not in cache:
                cache[(question, k)] = retriever.search(question, args.mode, k)
            return cache[(question, k)]

        return run

    test = held_out_questions("test", ("train", "test"))
    if args.limit:
        test = [q for s in ("python-faq", "elements") for q in [q for q in test if q.source == s][: args.limit]]
    val = held_out_questions("validation", ("validation",))
    conditions, thresholds, started = {}, {}, time.perf_counter()

    def memo(reply, k: int):
        """reply(question, hits, None) once per question; a threshold applied on top abstains
        exactly as reply(question, hits, t) would (the retrieval score is checked first)."""
        done: dict[str, Answer] = {}

        def at(q, hits, t):
            if should_abstain(hits, t):
                return Answer(NOT_IN_KB, chunks=[h.chunk for h in hits], abstained=True)
            if q.prompt not in done:
                done[q.prompt] = reply(q.prompt, hits)
            return done[q.prompt]

        return lambda q, t=None: at(q, retrieve(k)(q.prompt), t), at

    if args.reader:
        reader = ExtractiveReader.from_run(args.reader)
        draw = random_passage(retriever.store.all_chunks(), seed=0)
        run, at = memo(lambda question, hits: reader.answer(question, hits), args.k)
        thresholds["extractive"] = t_ex = tune_abstention(val, retrieve(args.k), at)
        conditions["extractive, random passage (no retrieval)"] = lambda q: reader.answer(q.prompt, draw(q.prompt))
        conditions[f"extractive, open-book ({args.mode} top-{args.k})"] = run
        conditions[f"extractive, open-book + abstention (t={t_ex:.4g})"] = lambda q: run(q, t_ex)
    if args.chat or args.llm_url:
        gen = (OpenAIChat(args.llm_url, args.model, timeout=120, max_tokens=args.max_new_tokens,
                          max_prompt_chars=args.max_prompt_chars) if args.llm_url
               else RunChat(args.chat, max_new_tokens=args.max_new_tokens))  # fmt: skip
        run_g, at_g = memo(lambda question, hits: answer(question, hits, gen), args.chat_k)
        thresholds["generative"] = t_gen = tune_abstention(val, retrieve(args.chat_k), at_g)
        conditions["generative, closed-book"] = lambda q: closed_book(q.prompt, gen)
        conditions[f"generative, open-book ({args.mode} top-{args.chat_k})"] = run_g
        conditions[f"generative, open-book + abstention (t={t_gen:.4g})"] = lambda q: run_g(q, t_gen)
    table = trust_table(test, conditions)
    print(format_table(table), flush=True)
    kinds = {"python-faq": "real questions, real gold passages", "elements": "templated questions over real entries"}
    counts = {s: sum(q.source == s for q in test) for s in kinds}
    print(json.dumps({"cpu": cpu_model(), "index": args.index, "reader": args.reader, "chat": args.chat,
                      "llm_url": args.llm_url, "test_questions": counts, "validation_questions": len(val),
                      "data_kinds": kinds, "thresholds_tuned_on_validation": thresholds,
                      "seconds": time.perf_counter() - started, "table": table}, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
