"""Span-extraction QA pairs made from the corpora: templated questions over real text.

Each :class:`SpanExample` is a question, a real passage (the context) and the span of that passage
that answers it, by character offsets (SQuAD's format, Rajpurkar et al. 2016). The passages are
real (Debian packages); the questions and the choice of span follow fixed rules, so the data kind
is **templated questions over real text**:

- FAQs (python-faq, python-glossary, perlfaq, debian-faq; :func:`genlab.data.sources.faq_rows`):
  the FAQ's own question, its answer as the context, and the answer's first sentence as the span
  (the lead sentence of an FAQ answer is usually the answer; the rule takes it, right or not).
- Dictionaries (FOLDOC, Jargon; dictd entries): "What is X?" for headword X, the entry text as the
  context (lines of a paragraph joined, FOLDOC's {cross-reference} braces removed), the first
  sentence of its first definition as the span (sense number, part of speech, <domain> and
  [usage] labels and a leading parenthesis skipped).
- Elements (dict-elements, Z <= 103): the three questions of
  :func:`genlab.data.chat.element_questions` (symbol, atomic number, atomic weight), the entry as the
  context, the value on its ``Symbol:`` / ``Atomic number:`` / ``Atomic weight:`` line as the span.

Splits are by source item with :func:`genlab.data.chat.split_of`, the same hash the chat data uses:
an FAQ entry or an element in the chat test split is in this test split too.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from genlab.core.errors import DataError
from genlab.data.chat import element_questions, read_dictd_entries, read_elements, split_of

KIND = "templated questions over real text"
#: Which sources :func:`span_qa_examples` reads by default.
SOURCES = ("faq", "foldoc", "jargon", "elements")

_SENTENCE = re.compile(r"\S.{19,399}?[.!?](?=\s+[A-Z(\"'`]|\s*$)", re.S)
_LEAD = re.compile(
    r"^(?:\s*(?:\d+\.|\([a-z0-9]\)|(?:n|v|vt|vi|adj|adv|interj|pp|prep|conj|abbrev)\.|<[^>]*>|\[[^\]]*\]|/[^/\n]{1,40}/))+\s*"
)


@dataclass(frozen=True)
class SpanExample:
    """``context[answer_start : answer_start + len(answer)] == answer``."""

    question: str
    context: str
    answer_start: int
    answer: str
    source: str
    item: str
    split: str

    @property
    def answer_end(self) -> int:
        return self.answer_start + len(self.answer)

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": KIND}


def _example(question: str, context: str, start: int, end: int, source: str, item: str) -> SpanExample | None:
    answer = context[start:end]
    if not question.strip() or not answer.strip() or answer != answer.strip():
        return None
    return SpanExample(question, context, start, answer, source, item, split_of(f"{source}:{item}"))


def first_sentence(text: str, start: int = 0) -> tuple[int, int] | None:
    """Character span of the first sentence of ``text`` at or after ``start`` (20 to 400 characters
    ending in . ! or ? before a capital letter, a quote, a parenthesis or the end)."""
    m = _SENTENCE.search(text, start)
    return (m.start(), m.end()) if m else None


def faq_examples(rows: Iterable[dict]) -> list[SpanExample]:
    """FAQ rows (``prompt``, ``answer``, ``source``, ``item``) -> the question over its answer, the
    answer's first sentence as the span."""
    out = []
    for r in rows:
        context = r["answer"]
        span = first_sentence(context)
        if span is not None:
            ex = _example(r["prompt"], context, *span, r["source"], r["item"])
            if ex is not None:
                out.append(ex)
    return out


def entry_context(body: str) -> str:
    """A dictd entry as a passage: each paragraph's lines joined by single spaces, {braces} removed."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body.replace("{", "").replace("}", ""))]
    return "\n\n".join(p for p in paragraphs if p)


def definition_span(context: str) -> tuple[int, int] | None:
    """The first sentence of the first definition: the paragraph after the headword lines, its
    sense number and labels skipped."""
    paragraphs = [m for m in re.finditer(r"[^\n]+", context)]
    if len(paragraphs) < 2:
        return None
    para = paragraphs[1]
    lead = _LEAD.match(para[0])
    start = para.start() + (lead.end() if lead else 0)
    if context[start : start + 1] == "(":  # "(Also leecher.) Among BBS types, ..."
        close = context.find(")", start)
        if close != -1 and close < para.end():
            start = close + 1
    while start < para.end() and context[start].isspace():
        start += 1
    span = first_sentence(context[: para.end()], start)
    if span is None or span[0] != start:
        return None
    return span


def dictionary_examples(entries: Iterable[tuple[str, str]], source: str, limit: int | None = None,
                        seed: int = 0) -> list[SpanExample]:  # fmt: skip
    """``What is X?`` over each dictd entry (headword, text) whose first definition has a first
    sentence; aliases of one entry (another headword, the same text) are asked once, under the
    entry's own headword. ``limit`` keeps a seeded sample."""
    out, seen = [], set()
    for head, body in entries:
        word = body.strip().splitlines()[0].strip() if body.strip() else ""
        if word.lower() != head.strip().lower() or word.lower() in seen or not re.search(r"[A-Za-z]", word):
            continue
        context = entry_context(body)
        span = definition_span(context)
        if span is None:
            continue
        ex = _example(f"What is {word}?", context, *span, source, word.lower())
        if ex is not None:
            seen.add(word.lower())
            out.append(ex)
    if limit is not None and len(out) > limit:
        out = random.Random(seed).sample(out, limit)
    return out


_ELEMENT_FIELDS = {
    "exact": r"^Symbol:\s*(\S+)",
    "integer": r"^Atomic number:\s*(\d+)",
    "number": r"^Atomic weight:\s*\(?([\d.]+)",
}


def element_examples(index: Path, max_z: int = 103) -> list[SpanExample]:
    """The element questions of :func:`genlab.data.chat.element_questions` over each entry of the
    dict-elements ``index``, the value on the entry's field line as the span."""
    texts = {head.strip().lower(): "\n".join(ln.strip() for ln in body.strip().splitlines())
             for head, body in read_dictd_entries(index)}  # fmt: skip
    out = []
    for q in element_questions(read_elements(index, max_z)):
        context = texts.get(q["item"], "")
        m = re.search(_ELEMENT_FIELDS[q["check"]], context, re.M)
        ex = _example(q["prompt"], context, m.start(1), m.end(1), "elements", q["item"]) if m else None
        if ex is not None:
            out.append(ex)
    return out


def _dictd_index(name: str) -> Path:
    from genlab.data.sources import DICTD_DIR

    index = DICTD_DIR / f"{name}.index"
    if not index.is_file():
        raise DataError(f"no {index}: install the Debian package dict-{name} (apt-get install dict-{name})")
    return index


def span_qa_examples(sources: Sequence[str] = SOURCES, dictionary_limit: int | None = 1500,
                     seed: int = 0) -> list[SpanExample]:  # fmt: skip
    """The span-QA pairs of ``sources`` (``faq``, ``foldoc``, ``jargon``, ``elements``): every split;
    pick one with ``[e for e in examples if e.split == "train"]``. Each dictionary gives at most
    ``dictionary_limit`` (a seeded sample)."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise DataError(f"unknown span-QA source '{unknown[0]}': choose from {list(SOURCES)}")
    out: list[SpanExample] = []
    for name in sources:
        if name == "faq":
            from genlab.data.sources import faq_rows

            out += faq_examples(faq_rows())
        elif name == "elements":
            out += element_examples(_dictd_index("elements"))
        else:
            out += dictionary_examples(read_dictd_entries(_dictd_index(name)), name, dictionary_limit, seed)
    if not out:
        raise DataError(f"no span-QA pairs from {list(sources)}: are the Debian packages installed?")
    return out


__all__ = [
    "KIND",
    "SOURCES",
    "SpanExample",
    "definition_span",
    "dictionary_examples",
    "element_examples",
    "entry_context",
    "faq_examples",
    "first_sentence",
    "span_qa_examples",
]
