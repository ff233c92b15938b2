"""Hallucination, measured: closed-book (the model alone) against open-book (with retrieval).

The held-out checkable questions (:func:`held_out_questions`):

- the Python FAQ questions of one split (:func:`genlab.data.chat.split_of`, the chat data's
  split; real questions), each with its FAQ answer as the gold passage. An answer is right when
  its token F1 against the gold answer's first sentence (the span of
  :mod:`genlab.data.span_qa`) is at least ``FAQ_F1`` (0.5);
- the element facts (symbol, atomic number, atomic weight; templated) of
  :func:`genlab.data.chat.element_questions`, judged by :func:`genlab.data.chat.check_answer`.

Each condition is a function question -> :class:`genlab.rag.answer.Answer`; :func:`trust_table`
runs every condition on every question and :func:`summarize` counts, over all N questions:

    accuracy          right answers / N
    confident wrong   answers that are wrong and do not abstain / N   (the hallucinations)
    abstained         abstentions / N   ("not in the knowledge base", "I don't know")
    groundedness      mean share of answer tokens found in the cited chunks, over the answers
                      that did not abstain (:func:`genlab.eval.qa.groundedness`; 0 without a citation)
    gold retrieved    share of questions whose gold passage text is among the chunks fed in

so accuracy + confident wrong + abstained = 1. For the extractive reader closed-book is not
defined (it can only copy a span of a passage); its no-retrieval baseline reads one passage drawn
at random from the knowledge base (:func:`random_passage`), labelled as such.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.errors import DataError
from genlab.data.chat import check_answer, element_questions, read_elements, split_of
from genlab.data.span_qa import faq_examples
from genlab.eval.qa import groundedness, normalize, token_f1
from genlab.rag.answer import Answer, tune_threshold
from genlab.rag.types import Chunk, Hit

FAQ_F1 = 0.5  # an FAQ answer is right at this token F1 against the gold answer's first sentence


@dataclass(frozen=True)
class Question:
    """A checkable question: ``gold`` is the answer (FAQ: the gold answer's first sentence),
    ``passage`` the gold passage (FAQ: the whole answer; elements: empty), ``row`` the question row
    :func:`genlab.data.chat.check_answer` judges (elements), ``kind`` real or templated."""

    prompt: str
    gold: str
    source: str
    kind: str
    split: str
    passage: str = ""
    row: dict = field(default_factory=dict, compare=False, hash=False)


def faq_questions(rows: Sequence[dict], split: str) -> list[Question]:
    """Python FAQ rows (``prompt``, ``answer``, ``source``, ``item``) of ``split`` as questions."""
    return [Question(e.question, e.answer, e.source, "real", e.split, e.context)
            for e in faq_examples(rows) if e.split == split]  # fmt: skip


def element_fact_questions(index: Path, split: str | None) -> list[Question]:
    """The element questions of ``split`` (None: all) from the dict-elements ``index``."""
    out = []
    for q in element_questions(read_elements(index)):
        s = split_of(f"elements:{q['item']}")
        if split is None or s == split:
            out.append(Question(q["prompt"], q["answer"], "elements", "templated", s, "", q))
    return out


def held_out_questions(split: str = "test", elements_split: str | None = "test") -> list[Question]:
    """The Python FAQ questions of ``split`` and the element facts of ``elements_split`` (None: all
    103 x 3, for a reader that never trained on elements) on this machine's Debian packages."""
    from genlab.data.sources import DICTD_DIR, faq_rows

    out = faq_questions(faq_rows(("python-faq",)), split)
    index = DICTD_DIR / "elements.index"
    if index.is_file():
        out += element_fact_questions(index, elements_split)
    if not out:
        raise DataError("no held-out questions: install python3-doc and dict-elements")
    return out


def is_correct(q: Question, text: str) -> bool:
    if q.row:
        return check_answer(q.row, text)
    return token_f1(text, q.gold) >= FAQ_F1


def gold_fed(q: Question, chunks: Sequence[Chunk]) -> bool:
    """Is the gold passage among the chunks fed in (its first sentence, normalised, inside one)?
    Elements: a chunk holding the element's name and the answer."""
    if q.row:
        name = normalize(q.row.get("item", ""))
        return any(name in normalize(c.text) and normalize(q.gold) in normalize(c.text) for c in chunks)
    gold = normalize(q.gold)
    return any(gold and gold[:120] in normalize(c.text) for c in chunks)


def score(q: Question, a: Answer) -> dict:
    right = (not a.abstained) and is_correct(q, a.text)
    return {
        "source": q.source,
        "right": right,
        "abstained": a.abstained,
        "wrong": not right and not a.abstained,
        "grounded": None if a.abstained else groundedness(a.text, a.cited_texts()),
        "f1": token_f1(a.text, q.gold) if not a.abstained else 0.0,
        "gold_fed": gold_fed(q, a.chunks),
        "fed": bool(a.chunks),
    }


def summarize(rows: Sequence[dict]) -> dict:
    n = len(rows)
    answered = [r["grounded"] for r in rows if r["grounded"] is not None]
    fed = [r for r in rows if r["fed"]]
    return {
        "n": n,
        "accuracy": sum(r["right"] for r in rows) / n if n else 0.0,
        "confident_wrong": sum(r["wrong"] for r in rows) / n if n else 0.0,
        "abstained": sum(r["abstained"] for r in rows) / n if n else 0.0,
        "groundedness": sum(answered) / len(answered) if answered else None,
        "f1": sum(r["f1"] for r in rows) / n if n else 0.0,
        "gold_retrieved": sum(r["gold_fed"] for r in fed) / len(fed) if fed else None,
    }


def trust_table(questions: Sequence[Question], conditions: dict[str, Callable[[Question], Answer]],
                by_source: bool = True) -> dict[str, dict]:  # fmt: skip
    """``{condition: summary}`` over all questions, and ``{condition: {source: summary}}`` under
    ``"by_source"`` when asked."""
    table: dict[str, dict] = {}
    per: dict[str, dict] = {}
    for name, run in conditions.items():
        rows = [score(q, run(q)) for q in questions]
        table[name] = summarize(rows)
        per[name] = {s: summarize([r for r in rows if r["source"] == s]) for s in sorted({r["source"] for r in rows})}
    if by_source:
        table["by_source"] = per
    return table


def format_table(table: dict[str, dict]) -> str:
    """A Markdown table of :func:`trust_table`'s summaries (rates in %)."""
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    lines = ["| condition | n | accuracy | confident wrong | abstained | groundedness | token F1 | gold retrieved |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in table.items():
        if name == "by_source":
            continue
        rates = " | ".join(pct(s[k]) for k in ("accuracy", "confident_wrong", "abstained", "groundedness"))
        lines.append(f"| {name} | {s['n']} | {rates} | {s['f1']:.3f} | {pct(s['gold_retrieved'])} |")
    return "\n".join(lines)


def tune_abstention(questions: Sequence[Question], retrieve: Callable[[str], list[Hit]],
                    answer_at: Callable[[Question, list[Hit], float | None], Answer]) -> float:  # fmt: skip
    """The retrieval-score threshold for ``answer_at`` (question, hits, threshold) -> Answer, tuned
    on ``questions`` (validation questions, never test) with :func:`genlab.rag.answer.tune_threshold`."""
    scores, right = [], []
    for q in questions:
        hits = retrieve(q.prompt)
        a = answer_at(q, hits, None)
        scores.append(max((h.score for h in hits), default=float("-inf")))
        right.append(not a.abstained and is_correct(q, a.text))
    return tune_threshold(scores, right)


def random_passage(chunks: Sequence[Chunk], seed: int = 0) -> Callable[[str], list[Hit]]:
    """A "retriever" that hands one chunk drawn at random: the no-retrieval baseline of a reader
    that cannot answer without a passage."""
    rng = random.Random(seed)
    pool = list(chunks)
    if not pool:
        raise DataError("the knowledge base holds no chunks to draw from")
    return lambda question: [Hit(rng.choice(pool), 0.0, 1)]


__all__ = [
    "FAQ_F1",
    "Question",
    "element_fact_questions",
    "faq_questions",
    "format_table",
    "gold_fed",
    "held_out_questions",
    "is_correct",
    "random_passage",
    "score",
    "summarize",
    "trust_table",
    "tune_abstention",
]
