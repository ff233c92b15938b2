"""Hallucination, closed- vs open-book, for the extractive and the generative reader: one JSON object.

    python benchmarks/rag_trust.py --index KB --reader runs/reader --chat runs/chat-sft
    python benchmarks/rag_trust.py --index KB --chat runs/chat-sft --shots 0 1 4   # zero- vs few-shot rows
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
- generative, closed-book, k-shot (``--shots 0 1 4``; k=0 is the "generative, closed-book" row):
  the chat model alone with k (question, gold answer) exemplars as earlier chat turns
  (:class:`genlab.rag.trust.FewShot`, seeded by ``--shot-seed``): Python FAQ questions get exemplars
  from the Python FAQ train split (real), element questions from the validation elements
  (templated; the train and test elements are the test questions here). Exemplars that do not fit
  the model's context are dropped oldest-first, with a note on stderr;
- generative, open-book: the chat model over the top-k hits, without and with the threshold.

Beside the table the JSON holds, per closed-book row, the share of element answers in the expected
short form (a bare number, a bare symbol: ``answer_form``) and with a number at all for the number
questions (``number_given``), the first answers per source (``samples``) and, for a genlab chat run
(``--chat``), the teacher-forced log-probability of the gold answer after the k-shot prompt, per
token and per answer, by source (``gold_logprob``: it moves when greedy answers do not).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time

from genlab.rag.answer import NOT_IN_KB, Answer, OpenAIChat, RunChat, answer, closed_book, fit_shots, should_abstain
from genlab.rag.reader import ExtractiveReader
from genlab.rag.trust import (
    FewShot,
    format_table,
    held_out_questions,
    in_answer_form,
    random_passage,
    shot_pool,
    trust_table,
    tune_abstention,
)
from genlab.recipes.rag import open_retriever


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor()


_NUMBER = re.compile(r"\d+(\.\d+)?")


def answer_forms(pairs, samples: int = 3) -> dict:
    """Over (question, answer) pairs of one row: per element check kind (integer, number, exact) the
    share of answers in the expected short form and, for the number kinds, with a number at all;
    the first ``samples`` answers per source."""
    out: dict = {"samples": {}}
    for kind in ("integer", "number", "exact"):
        mine = [(q, a) for q, a in pairs if q.row and q.row.get("check", "exact") == kind]
        if not mine:
            continue
        entry = {"n": len(mine), "answer_form": sum(bool(in_answer_form(q, a.text)) for q, a in mine) / len(mine)}
        if kind != "exact":
            entry["number_given"] = sum(_NUMBER.search(a.text) is not None for _, a in mine) / len(mine)
        out[kind] = entry
    for q, a in pairs:
        got = out["samples"].setdefault(q.source, [])
        if len(got) < samples:
            got.append({"question": q.prompt, "answer": a.text})
    return out


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
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 4], help="closed-book few-shot rows: exemplars each")
    ap.add_argument("--shot-seed", type=int, default=0, help="the seed of the exemplar draw")
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
    shot_rows, exemplars, answers, picks, gen_ref = {}, {}, {}, {}, {}
    first_of = {q.source: q for q in reversed(test)}  # a question per source, to list its exemplars

    def recorded(name, run):
        """run, keeping each (question, answer) under ``name`` for the form shares and the samples."""

        def go(q):
            a = run(q)
            answers.setdefault(name, []).append((q, a))
            return a

        return go

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
        gen_ref["gen"] = gen
        run_g, at_g = memo(lambda question, hits: answer(question, hits, gen), args.chat_k)
        thresholds["generative"] = t_gen = tune_abstention(val, retrieve(args.chat_k), at_g)
        pool = shot_pool("train", ("validation",))
        for k in dict.fromkeys([0, *args.shots]):
            picks[k] = pick = FewShot(pool, k, args.shot_seed)
            name = "generative, closed-book" if k == 0 else f"generative, closed-book, {k}-shot"
            shot_rows[k] = name
            exemplars[k] = {s: [p for p, _ in pick(q)] for s, q in first_of.items()}
            conditions[name] = recorded(name, lambda q, pick=pick: closed_book(q.prompt, gen, pick(q)))
        conditions[f"generative, open-book ({args.mode} top-{args.chat_k})"] = run_g
        conditions[f"generative, open-book + abstention (t={t_gen:.4g})"] = lambda q: run_g(q, t_gen)
    table = trust_table(test, conditions)
    for name in shot_rows.values():
        dropped = [a.shots_dropped for _, a in answers.get(name, []) if a.shots_dropped]
        if dropped:
            print(f"note: {name}: {sum(dropped)} exemplars dropped oldest-first to fit the context, "
                  f"in {len(dropped)} of {len(answers[name])} prompts", file=sys.stderr)  # fmt: skip
    print(format_table(table), flush=True)
    forms = {name: answer_forms(answers.get(name, [])) for name in shot_rows.values()}
    gold_logprob = {}
    if hasattr(gen_ref.get("gen"), "reply_logprob"):  # a genlab chat run: log p(gold | k-shot prompt)
        gen = gen_ref["gen"]
        for k, name in shot_rows.items():
            pick, per = picks[k], {}
            for q in test:
                messages, _ = fit_shots(q.prompt, pick(q), gen.count, gen.budget)
                lp, n = gen.reply_logprob(messages, " ".join(q.gold.split()))
                per.setdefault(q.source, []).append((lp, n))
            gold_logprob[name] = {src: {"n": len(v), "mean_per_token": sum(lp for lp, _ in v) / sum(n for _, n in v),
                                        "mean_per_answer": sum(lp for lp, _ in v) / len(v)}
                                  for src, v in sorted(per.items())}  # fmt: skip
    kinds = {"python-faq": "real questions, real gold passages", "elements": "templated questions over real entries"}
    counts = {s: sum(q.source == s for q in test) for s in kinds}
    print(json.dumps({"cpu": cpu_model(), "index": args.index, "reader": args.reader, "chat": args.chat,
                      "llm_url": args.llm_url, "test_questions": counts, "validation_questions": len(val),
                      "data_kinds": kinds, "thresholds_tuned_on_validation": thresholds,
                      "seconds": time.perf_counter() - started, "table": table,
                      "shots": {"k": list(shot_rows), "rows": shot_rows, "seed": args.shot_seed,
                                "exemplar_splits": {"python-faq": "train (real)", "elements": "validation (templated)"},
                                "exemplars": exemplars, "forms": forms, "gold_logprob": gold_logprob,
                                "dropped": {shot_rows[k]: sum(a.shots_dropped for _, a in answers.get(shot_rows[k], []))
                                            for k in shot_rows}}},
                     default=str))  # fmt: skip


if __name__ == "__main__":
    main()
