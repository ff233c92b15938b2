"""Token-window chunking that respects headings and paragraphs.

A reader (:mod:`genlab.rag.ingest`) turns a file into a :class:`Document`: its sections, each
a heading path ("Design and History FAQ > Why does Python use indentation?") and the paragraphs
under it. :func:`chunk_document` cuts each section into passages of at most ``max_tokens``
tokens of the embedding model's tokenizer (MiniLM's WordPiece), by these rules:

1. A heading starts a new chunk: no chunk spans two sections.
2. Units are sentences (a paragraph is split after ``.``, ``!`` or ``?`` followed by space and
   a capital, digit, quote or bracket); an indented paragraph (a code block) is split at lines.
   A unit longer than the budget on its own is split at words (the only mid-sentence starts).
3. Units are packed greedily. When the next unit does not fit, the chunk is cut at the last
   paragraph boundary inside it if that keeps at least half the budget in the chunk (the rest
   moves on: a paragraph boundary within reach is preferred to a mid-paragraph cut), else at the
   sentence boundary.
4. A cut inside a paragraph is overlapped: the next chunk starts with the last whole sentences of
   the previous one, up to ``overlap`` tokens (never a partial sentence). A cut at a paragraph
   boundary needs no overlap and gets none.

Token counts come from a ``count`` function (a batch of texts -> their token counts, without
[CLS]/[SEP]) so that the rules are testable with any tokenizer; :func:`wordpiece_counter` gives
the one of a :class:`~genlab.tokenizers.WordPieceTokenizer`. The budget of a section is
``max_tokens`` less the tokens of its heading line, which is indexed with every passage
(:func:`Passage.indexed_text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Counter = Callable[[Sequence[str]], list[int]]

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[`*])")
MIN_BUDGET = 16  # tokens a passage keeps however long its heading


@dataclass
class Section:
    """A heading path and the paragraphs under it (the path is "" before the first heading)."""

    path: str
    paragraphs: list[str] = field(default_factory=list)


@dataclass
class Document:
    """One document as a reader gives it: ``doc_id`` (its path under the source root, or a
    dictionary's ``name/headword``), ``title`` and its sections in order."""

    doc_id: str
    title: str
    sections: list[Section]

    def text(self) -> str:
        return "\n\n".join(p for s in self.sections for p in s.paragraphs)


@dataclass(frozen=True)
class Passage:
    """A chunk before it has an id: its section path, position in the document, text and tokens."""

    section: str
    position: int
    text: str
    tokens: int

    def indexed_text(self, title: str, headings: bool = True) -> str:
        """What is embedded and BM25-indexed: the heading line and the passage (or the passage alone)."""
        return (heading_line(title, self.section) if headings else "") + self.text


def heading_line(title: str, section: str) -> str:
    """The line indexed above every passage: the title and heading path (once, not repeated)."""
    head = section if section.startswith(title) else " > ".join(x for x in (title, section) if x)
    return f"{head}\n" if head else ""


def wordpiece_counter(tokenizer) -> Counter:
    """Token counts (no special tokens) of a batch of texts under a WordPiece tokenizer."""

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return tokenizer.tokenize(list(texts), add_special_tokens=False).lengths.tolist()

    return count


def split_sentences(paragraph: str) -> list[str]:
    """A paragraph's sentences; an indented paragraph (code, a literal block) splits at its lines."""
    if paragraph[:1] in (" ", "\t"):
        return [ln for ln in paragraph.split("\n") if ln.strip()]
    flat = " ".join(paragraph.split())
    return [s for s in _SENTENCE_END.split(flat) if s.strip()]


@dataclass
class _Unit:
    text: str
    tokens: int
    para_start: bool  # the first unit of a paragraph
    sentence_start: bool  # False for the second and later pieces of an over-long sentence


def _units(paragraphs: list[str], budget: int, count: Counter) -> list[_Unit]:
    pieces = [(split_sentences(p), p[:1] in (" ", "\t")) for p in paragraphs]
    flat = [s for sents, _ in pieces for s in sents]
    lengths = count(flat)
    units: list[_Unit] = []
    k = 0
    for sents, code in pieces:
        for j, s in enumerate(sents):
            n = lengths[k]
            k += 1
            if n <= budget:
                units.append(_Unit(s, n, j == 0, True))
                continue
            words = s.split(" ") if code else s.split()
            word_tokens = count(words)
            cur: list[str] = []
            cur_n = 0
            first = True
            for w, wn in zip(words, word_tokens):
                if cur and cur_n + wn > budget:
                    units.append(_Unit(" ".join(cur), cur_n, j == 0 and first, first))
                    cur, cur_n, first = [], 0, False
                cur.append(w)
                cur_n += wn
            if cur:
                units.append(_Unit(" ".join(cur), cur_n, j == 0 and first, first))
    return units


def _join(units: list[_Unit]) -> str:
    out = ""
    for i, u in enumerate(units):
        out += ("" if i == 0 else "\n\n" if u.para_start else " ") + u.text
    return out


def _tokens(units: list[_Unit]) -> int:
    return sum(u.tokens for u in units)


def _overlap(head: list[_Unit], nxt: _Unit, budget: int, overlap: int) -> list[_Unit]:
    """The last whole sentences of ``head``'s final paragraph, up to ``overlap`` tokens, that fit
    beside ``nxt``; never all of ``head`` (a chunk must not contain the one before it)."""
    carry: list[_Unit] = []
    for x in reversed(head[1:]):
        if not x.sentence_start or _tokens(carry) + x.tokens > overlap:
            break
        if _tokens(carry) + x.tokens + nxt.tokens > budget:
            break
        carry.insert(0, x)
        if x.para_start:
            break
    return carry


def pack(units: list[_Unit], budget: int, overlap: int) -> list[list[_Unit]]:
    """Units -> chunks (lists of units) by rules 3 and 4 of the module docstring.

    Token counts are summed over units (a space between units adds no WordPiece token)."""
    chunks: list[list[_Unit]] = []
    cur: list[_Unit] = []
    for u in units:
        while cur and _tokens(cur) + u.tokens > budget:
            cut = len(cur)
            for i in range(len(cur) - 1, 0, -1):
                if cur[i].para_start:
                    if _tokens(cur[:i]) >= budget / 2:
                        cut = i
                    break
            chunks.append(cur[:cut])
            if cut < len(cur):
                cur = cur[cut:]  # a paragraph boundary within reach: the rest moves on, no overlap
            elif not u.para_start and u.sentence_start:
                cur = _overlap(cur, u, budget, overlap)  # a cut inside a paragraph
            else:
                cur = []
        cur.append(u)
    if cur:
        chunks.append(cur)
    return chunks


def chunk_document(
    doc: Document, count: Counter, max_tokens: int = 200, overlap: int = 32, headings: bool = True
) -> list[Passage]:
    """A document's passages in order (see the module docstring); empty sections give none.
    ``headings``: the heading line is indexed with each passage and counts against its budget."""
    if max_tokens < MIN_BUDGET:
        raise ValueError(f"max_tokens must be at least {MIN_BUDGET}, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must lie in [0, max_tokens), got {overlap}")
    sections = [s for s in doc.sections if any(p.strip() for p in s.paragraphs)]
    heads = count([heading_line(doc.title, s.path) for s in sections]) if headings else [0] * len(sections)
    out: list[Passage] = []
    for s, h in zip(sections, heads):
        budget = max(max_tokens - h, MIN_BUDGET)
        paras = [p.rstrip() for p in s.paragraphs if p.strip()]
        for group in pack(_units(paras, budget, count), budget, min(overlap, budget // 2)):
            out.append(Passage(s.path, len(out), _join(group), sum(u.tokens for u in group)))
    return out
