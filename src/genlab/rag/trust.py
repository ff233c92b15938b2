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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.errors import ConfigError, DataError
from genlab.data.chat import check_answer, element_questions, read_elements, split_of
from genlab.data.span_qa import faq_examples, first_sentence
from genlab.eval.qa import exact_match, groundedness, normalize, token_f1
from genlab.rag.answer import NOT_IN_KB, Answer, build_prompt, closed_book_messages, tune_threshold
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


def element_fact_questions(index: Path, splits: Sequence[str] | None) -> list[Question]:
    """The element questions whose element is in one of ``splits`` (None: all) from the dict-elements ``index``."""
    out = []
    for q in element_questions(read_elements(index)):
        s = split_of(f"elements:{q['item']}")
        if splits is None or s in splits:
            out.append(Question(q["prompt"], q["answer"], "elements", "templated", s, "", q))
    return out


def held_out_questions(split: str = "test", element_splits: Sequence[str] | None = ("test",)) -> list[Question]:
    """The Python FAQ questions of ``split`` and the element facts of ``element_splits`` on this
    machine's Debian packages. For readers that never trained on elements every element is held
    out: test on ``("train", "test")`` and tune on ``("validation",)``, which stay disjoint."""
    from genlab.data.sources import DICTD_DIR, faq_rows

    out = faq_questions(faq_rows(("python-faq",)), split)
    index = DICTD_DIR / "elements.index"
    if index.is_file():
        out += element_fact_questions(index, element_splits)
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


# ---------------------------------------------------------------- few-shot exemplars


def shot_pool(faq_split: str = "train", element_splits: Sequence[str] = ("validation",)) -> list[Question]:
    """The questions few-shot exemplars are drawn from, never test ones: the Python FAQ questions of
    ``faq_split`` (default ``train``, the split the generative reader is fine-tuned on; real
    questions, the gold answer's first sentence) and the element facts of ``element_splits``
    (default ``validation``: the benchmark tests the ``train`` and ``test`` elements, which no reader
    trained on; templated). ConfigError when ``test`` is asked for."""
    if faq_split == "test" or "test" in element_splits:
        raise ConfigError("few-shot exemplars never come from the test split: draw them from train or validation")
    return held_out_questions(faq_split, tuple(element_splits))


class FewShot:
    """k (question, gold answer) exemplars for a question, drawn from ``pool`` (:func:`shot_pool`).

    Per source (Python FAQ questions get FAQ exemplars, element questions element ones), the pool is
    put in one seeded order (sorted, then shuffled by ``random.Random(f"{seed}:{source}")``) and a
    question gets the first k of it that are not the question itself: the same exemplars for every
    question of a source in a condition, the k=1 exemplar the first of the k=4 ones, the same on every
    machine. Gold answers are in the short form :func:`is_correct` accepts (FAQ: the first sentence,
    whitespace collapsed; elements: ``Fe``, ``26``, ``55.845``). A pool question of the test split is
    a DataError.
    """

    def __init__(self, pool: Sequence[Question], k: int, seed: int = 0) -> None:
        if k < 0:
            raise ConfigError(f"the number of few-shot exemplars must be >= 0, got {k}")
        test = [q.prompt for q in pool if q.split == "test"]
        if test:
            raise DataError(f"few-shot exemplars must not come from the test split: {len(test)} do ('{test[0]}')")
        self.k, self.seed = k, seed
        self.order: dict[str, list[Question]] = {}
        for source in sorted({q.source for q in pool}):
            mine = sorted((q for q in pool if q.source == source), key=lambda q: (q.prompt, q.gold))
            random.Random(f"{seed}:{source}").shuffle(mine)
            self.order[source] = mine

    def __call__(self, q: Question) -> list[tuple[str, str]]:
        if self.k == 0:
            return []
        asked = normalize(q.prompt)
        picks = [p for p in self.order.get(q.source, []) if normalize(p.prompt) != asked][: self.k]
        if len(picks) < self.k:
            raise DataError(f"{len(picks)} few-shot exemplars of {q.source} in the pool, {self.k} asked: lower k")
        return [(" ".join(p.prompt.split()), " ".join(p.gold.split())) for p in picks]


_FORMS = {"integer": re.compile(r"^\s*\d+\s*\.?\s*$"), "number": re.compile(r"^\s*\d+(\.\d+)?\s*\.?\s*$"),
          "exact": re.compile(r"^\s*[A-Z][a-z]{0,2}\s*\.?\s*$")}  # fmt: skip


def in_answer_form(q: Question, text: str) -> bool | None:
    """Is an element answer in the expected short form, right or not: a bare integer for the atomic
    number, a bare number for the weight, a symbol (``Fe``: a capital and at most two small letters)
    for the symbol? (the first line of ``text``). None for questions with no fixed form (FAQ)."""
    if not q.row:
        return None
    lines = text.strip().splitlines()
    return bool(lines) and _FORMS[q.row.get("check", "exact")].match(lines[0]) is not None


def reader_conversations(faq: Sequence[dict], elements_index: Path | None, split: str = "train",
                         seed: int = 0) -> list[dict]:  # fmt: skip
    """SFT conversations that teach a chat model both ways of answering, from one split (templated
    prompts over real text): closed-book (:data:`CLOSED_BOOK_PROMPT`, the question, the gold
    answer) and open-book (:func:`genlab.rag.answer.build_prompt` with the gold passage and a
    distractor in random order, the gold answer citing the gold passage's number; one in four
    with the distractor alone, answered :data:`NOT_IN_KB`). FAQ rows as for :func:`faq_questions`;
    element facts from the dict-elements ``elements_index``."""
    rng = random.Random(seed)
    items = [(e.question, e.answer, Chunk(i, e.item.split("#")[0], e.source, "FAQ", e.question, 0, e.context), e.item)
             for i, e in enumerate(faq_examples(faq)) if e.split == split]  # fmt: skip
    if elements_index is not None:
        from genlab.data.span_qa import element_examples

        items += [(e.question, e.answer, Chunk(10**6 + i, "elements", "elements", e.item, "", 0, e.context), e.item)
                  for i, e in enumerate(element_examples(elements_index)) if e.split == split]  # fmt: skip
    out = []
    for question, gold, chunk, item in items:
        other = rng.choice(items)[2]
        if other.text == chunk.text:
            continue
        out.append({"messages": [*closed_book_messages(question), {"role": "assistant", "content": gold}]})
        if rng.random() < 0.25:
            prompt, reply = build_prompt(question, [other]), NOT_IN_KB
        else:
            order = [chunk, other] if rng.random() < 0.5 else [other, chunk]
            prompt, reply = build_prompt(question, order), f"{gold} [{order.index(chunk) + 1}]"
        out.append({"messages": [*prompt.messages, {"role": "assistant", "content": reply}]})
        for row in out[-2:]:
            row.update(source=chunk.source, kind="templated", item=item, split=split)
    return out


def gold_answers(row: dict) -> list[str]:
    """The gold answers of an evaluation row: ``answers`` (a list) if given, else the first
    sentence of ``answer`` (an FAQ answer: its lead sentence, the span of :mod:`genlab.data.span_qa`),
    else ``answer`` whole."""
    if isinstance(row.get("answers"), list) and row["answers"]:
        return [str(a) for a in row["answers"]]
    text = str(row.get("answer", ""))
    span = first_sentence(text)
    return [text[span[0] : span[1]] if span else text.strip()]


def answer_metrics(rows: Sequence[dict], retrieve: Callable[[str], list[Hit]],
                   reply: Callable[[str, list[Hit], float | None], Answer],
                   threshold: float | None = None) -> dict:  # fmt: skip
    """Exact match, token F1 (both over all rows; an abstention scores 0), groundedness (over the
    rows answered) and the abstention rate of ``reply`` on rows ``{"question", "answer" or
    "answers"}``, each question's passages from ``retrieve``."""
    em, f1, grounded, abstained = [], [], [], 0
    for row in rows:
        question = row.get("question") or row.get("prompt")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"an evaluation row needs a 'question', got keys {sorted(row)}")
        gold = gold_answers(row)
        a = reply(question, retrieve(question), threshold)
        if a.abstained:
            abstained += 1
            em.append(0.0)
            f1.append(0.0)
            continue
        em.append(exact_match(a.text, gold))
        f1.append(token_f1(a.text, gold))
        grounded.append(groundedness(a.text, a.cited_texts()))
    n = len(rows)
    return {"n": n, "exact_match": sum(em) / n if n else 0.0, "f1": sum(f1) / n if n else 0.0,
            "groundedness": sum(grounded) / len(grounded) if grounded else None,
            "abstained": abstained / n if n else 0.0}  # fmt: skip


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
    "FewShot",
    "answer_metrics",
    "gold_answers",
    "Question",
    "element_fact_questions",
    "faq_questions",
    "format_table",
    "gold_fed",
    "held_out_questions",
    "in_answer_form",
    "is_correct",
    "random_passage",
    "reader_conversations",
    "score",
    "shot_pool",
    "summarize",
    "trust_table",
    "tune_abstention",
]
