"""Which book of the King James Bible a long passage comes from: a long-context encoder task.

The ``kjv`` source (Debian's ``bible -l0`` output, real text) is a header line per chapter
(``Genesis 1``, ``1 Samuel 3``) followed by verses indented as ``  12 And the ...``. A book's
text here is its verses' words, verse numbers and chapter headers removed (they would name the
book or its position), joined by single newlines.

Splits are by position inside each book, so that no passage crosses a split: a book's
characters ``[0, a)`` are its train region, ``[a, b)`` its validation region and ``[b, n)``
its test region, with ``a = round(n * train_fraction)`` and ``b = a + round(n * val_fraction)``.
Training passages are windows of ``length`` characters drawn anywhere inside the train region
(:meth:`BookPassages.train_batch`); validation and test passages are the consecutive,
non-overlapping windows of ``length`` characters of their regions, cut from the region's start.
Classes are balanced: every book keeps the same number of validation (and of test) passages,
the smallest count among the books, and training draws a book uniformly before a window, so
chance is 1 / K for K books.

Tier 1: imports only ``genlab.core``, ``genlab.data``, numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from genlab.core.errors import DataError
from genlab.data.sources import read_text

_VERSE = re.compile(r"^\s+\d+\s+(.*)$")
_HEADER = re.compile(r"^(\S.*?)\s+\d+$")


def kjv_books(text: str | None = None) -> dict[str, str]:
    """Book name -> its text (verses without numbers, one per line), in canonical order.

    ``text`` defaults to the ``kjv`` source."""
    text = read_text("kjv") if text is None else text
    books: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        if not line.strip():
            continue
        header = _HEADER.match(line)
        if header and not line[0].isspace():
            current = books.setdefault(header.group(1), [])
            continue
        verse = _VERSE.match(line)
        if verse is None or current is None:
            raise DataError(f"unexpected line in the KJV text: {line[:60]!r}: rebuild it, 'genlab data prepare kjv'")
        current.append(verse.group(1).strip())
    if not books:
        raise DataError("the KJV text has no chapter headers: rebuild it with 'genlab data prepare kjv'")
    return {name: "\n".join(verses) for name, verses in books.items()}


def largest_books(books: dict[str, str], n: int) -> list[str]:
    """The ``n`` books with the most characters, longest first (ties by name)."""
    if not 1 <= n <= len(books):
        raise DataError(f"n={n} books: choose between 1 and {len(books)}")
    return sorted(books, key=lambda b: (-len(books[b]), b))[:n]


@dataclass
class BookPassages:
    """Position splits of the chosen books; see the module docstring.

    ``regions[split][k]`` is ``(start, end)`` of book ``k``'s region in ``texts[k]``;
    ``passages[split]`` lists ``(book index, start)`` of the val / test windows."""

    names: list[str]
    texts: list[str]
    length: int
    regions: dict[str, list[tuple[int, int]]]
    passages: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def text(self, book: int, start: int) -> str:
        return self.texts[book][start : start + self.length]

    def split(self, name: str) -> tuple[list[str], np.ndarray]:
        """``(texts, labels)`` of the fixed ``val`` or ``test`` passages."""
        if name not in self.passages:
            raise DataError(f"split '{name}' has no fixed passages: use 'val' or 'test' (train draws windows)")
        rows = self.passages[name]
        return [self.text(b, s) for b, s in rows], np.array([b for b, _ in rows], dtype=np.int64)

    def train_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """``batch_size`` random windows, each from a uniformly drawn book's train region."""
        labels = rng.integers(len(self.names), size=batch_size)
        texts = []
        for b in labels:
            lo, hi = self.regions["train"][b]
            start = int(rng.integers(lo, hi - self.length + 1))  # the window ends inside the region
            texts.append(self.text(int(b), start))
        return texts, labels.astype(np.int64)


def book_passages(
    books: dict[str, str],
    names: list[str],
    length: int,
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
) -> BookPassages:
    """Cut each named book into train / val / test regions and fixed val / test passages."""
    if length < 1:
        raise DataError(f"length={length} must be positive")
    if not (train_fraction > 0 and val_fraction > 0 and train_fraction + val_fraction < 1):
        raise DataError(f"fractions train={train_fraction}, val={val_fraction} must be positive and sum below 1")
    missing = [n for n in names if n not in books]
    if missing:
        raise DataError(f"book '{missing[0]}' is not in the text: choose from {sorted(books)[:6]}...")
    texts = [books[n] for n in names]
    regions: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for text in texts:
        n = len(text)
        a = round(n * train_fraction)
        b = a + round(n * val_fraction)
        for split, (lo, hi) in zip(("train", "val", "test"), ((0, a), (a, b), (b, n)), strict=True):
            if hi - lo < length:
                raise DataError(f"a {split} region of {hi - lo} characters is shorter than length={length}")
            regions[split].append((lo, hi))
    passages: dict[str, list[tuple[int, int]]] = {}
    for split in ("val", "test"):
        per_book = min((hi - lo) // length for lo, hi in regions[split])  # balanced: the smallest count
        passages[split] = [(k, lo + i * length) for k, (lo, _) in enumerate(regions[split]) for i in range(per_book)]
    return BookPassages(names=list(names), texts=texts, length=length, regions=regions, passages=passages)
