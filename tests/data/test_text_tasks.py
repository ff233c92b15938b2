"""Fortune topics, stdlib (docstring, code) pairs, splits and resumable batches, on small hand-made inputs."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from genlab.core.errors import DataError
from genlab.data.batches import ShuffledBatches
from genlab.data.code import (
    CodePair,
    docstring_summary,
    extract_pairs,
    split_by_package,
    stdlib_pairs,
)
from genlab.data.text_tasks import (
    fortune_corpus,
    fortune_topics,
    length_sorted_batches,
    stratified_split,
)


def _write_topic(folder: Path, name: str, entries: list[str]) -> None:
    (folder / name).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")


@pytest.fixture
def fortunes(tmp_path: Path) -> Path:
    folder = tmp_path / "fortunes"
    folder.mkdir()
    _write_topic(folder, "art", [f"art fortune {i}" for i in range(20)] + ["shared line", "x" * 500])
    _write_topic(folder, "food", [f"food fortune {i}" for i in range(12)] + ["shared line", "food fortune 3"])
    _write_topic(folder, "tiny", ["only one", "and two"])
    (folder / "art.dat").write_bytes(b"\x00\x01binary index")
    (folder / "off").mkdir()
    _write_topic(folder / "off", "rude", [f"rude {i}" for i in range(30)])
    return folder


def test_fortune_topics_are_files_with_enough_entries(fortunes: Path) -> None:
    ds = fortune_topics(min_entries=10, max_chars=400, max_per_topic=100, folder=fortunes)
    assert ds.classes == ["art", "food"]  # 'tiny' has too few, off/ and art.dat are not read
    texts = ds.train.texts + ds.val.texts + ds.test.texts
    labels = np.concatenate([ds.train.labels, ds.val.labels, ds.test.labels])
    assert len(texts) == len(set(texts)) == 20 + 12  # the repeat kept once; the cross-topic line and long one dropped
    assert "shared line" not in texts and "x" * 500 not in texts
    assert all(t.split()[0] == ds.classes[y] for t, y in zip(texts, labels))  # label = the file's name
    for part in (ds.train, ds.val, ds.test):
        assert set(part.labels.tolist()) == {0, 1}  # stratified: every class in every split
    assert ds.held_out() == set(ds.val.texts) | set(ds.test.texts)
    again = fortune_topics(min_entries=10, max_chars=400, max_per_topic=100, folder=fortunes)
    assert again.test.texts == ds.test.texts  # deterministic
    other = fortune_topics(min_entries=10, max_chars=400, max_per_topic=100, seed=1, folder=fortunes)
    assert other.test.texts != ds.test.texts


def test_fortune_topics_named_capped_and_refused(fortunes: Path) -> None:
    ds = fortune_topics(topics=["food", "art"], max_per_topic=10, folder=fortunes)
    assert ds.classes == ["food", "art"]
    assert np.bincount(np.concatenate([ds.train.labels, ds.val.labels, ds.test.labels])).tolist() == [10, 10]
    with pytest.raises(DataError, match="no fortune topic 'poetry'.*topics: art, food, tiny"):
        fortune_topics(topics=["poetry", "art"], folder=fortunes)
    with pytest.raises(DataError, match="lower min_entries"):
        fortune_topics(min_entries=15, folder=fortunes)
    corpus = fortune_corpus(exclude={"art fortune 0"}, folder=fortunes)
    assert "art fortune 0" not in corpus and "only one" in corpus and len(corpus) == len(set(corpus))


def test_stratified_split_counts() -> None:
    labels = np.repeat([0, 1, 2], [10, 20, 5])
    train, val, test = stratified_split(labels, 0.2, 0.2, seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(35))
    assert np.bincount(labels[test]).tolist() == [2, 4, 1] and np.bincount(labels[val]).tolist() == [2, 4, 1]
    with pytest.raises(DataError, match="too few"):
        stratified_split(np.array([0, 0, 1]), 0.3, 0.3)


def test_shuffled_batches_resume_exactly_and_bucket_by_length() -> None:
    lengths = np.arange(100) % 17

    def make():
        return ShuffledBatches(100, 10, lambda rows: rows.tolist(), seed=2, lengths=lengths, bucket=5)

    it = make()
    epoch = [i for _ in range(10) for i in next(it)]
    assert sorted(epoch) == list(range(100))  # one epoch sees every item once
    spread = np.mean([np.ptp(lengths[np.array(next(make()))])])
    plain = next(ShuffledBatches(100, 10, lambda rows: rows, seed=2))
    assert spread < np.ptp(lengths[plain])  # a bucketed batch holds similar lengths
    state = it.state_dict()
    a = [next(it) for _ in range(13)]  # crosses an epoch boundary
    it2 = ShuffledBatches(100, 10, lambda rows: rows.tolist(), seed=99, lengths=lengths, bucket=5)
    it2.load_state_dict(state)
    assert [next(it2) for _ in range(13)] == a
    r0 = next(ShuffledBatches(100, 5, lambda rows: rows.tolist(), seed=2, rank=0, world_size=2))
    r1 = next(ShuffledBatches(100, 5, lambda rows: rows.tolist(), seed=2, rank=1, world_size=2))
    assert r0 + r1 == next(ShuffledBatches(100, 10, lambda rows: rows.tolist(), seed=2))
    assert [b.tolist() for b in length_sorted_batches([1, 5, 3], 2)] == [[1, 2], [0]]
    with pytest.raises(DataError, match="cannot fill"):
        ShuffledBatches(3, 4, list)


SOURCE = '''
def add(a, b):
    """Return the sum of a and b.

    Longer explanation that is not part of the summary.
    """
    return a + b


class Box:
    def get(self, key, default=None):
        """Look up a key
        in the box."""
        # a comment stays
        return self.data.get(key, default)

    def stub(self):
        """Only a docstring: nothing to search for."""

    def short(self):
        """Too short."""
        return 1

    def outer(self):
        """Build the inner helper function."""
        def inner():
            """Return forty two as the answer."""
            return 42
        return inner


def one_liner(): "Docstring on the def line is skipped."; return 0
'''


def test_extract_pairs_cut_the_docstring_out() -> None:
    pairs = extract_pairs(SOURCE, "pkg.mod")
    assert [p.name for p in pairs] == ["add", "Box.get", "Box.outer", "Box.outer.inner"]
    add, get, outer, inner = pairs
    assert add.query == "Return the sum of a and b."  # the first paragraph only
    assert add.code == "def add(a, b):\n    return a + b"
    assert get.query == "Look up a key in the box."  # one line
    assert (
        get.code == "def get(self, key, default=None):\n    # a comment stays\n    return self.data.get(key, default)"
    )
    assert "Return forty two as the answer." in outer.code  # the inner function keeps its own
    assert "Build the inner helper" not in outer.code and inner.code.startswith("def inner():")
    assert add.module == "pkg.mod" and add.package == "pkg"
    assert docstring_summary("  A  first\n line.\n\nSecond.") == "A first line."


def test_real_stdlib_modules_never_leak_their_docstrings() -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    for name in ("json/decoder.py", "textwrap.py", "shlex.py"):
        pairs = extract_pairs((root / name).read_text(encoding="utf-8"), name)
        assert len(pairs) >= 3
        for p in pairs:
            fn = ast.parse(p.code).body[0]  # what is left is still valid Python: one function
            assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(fn) is None
            assert p.query not in p.code


def _package(root: Path, rel: str, functions: list[tuple[str, str]]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join(f'def {n}(x):\n    """{doc}"""\n    return x + {i}\n' for i, (n, doc) in enumerate(functions))
    path.write_text(body, encoding="utf-8")


def test_stdlib_pairs_skip_tests_dedupe_and_split_by_package(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    for p in range(6):
        _package(root, f"pkg{p}/mod.py", [(f"f{p}_{i}", f"Compute value number {p} {i} now.") for i in range(4)])
    _package(root, "solo.py", [("g", "Compute value number 0 0 now."), ("h", "A fresh summary here.")])  # dup
    _package(root, "test/test_x.py", [("t", "Test helpers are never read.")])
    _package(root, "pkg0/tests/test_y.py", [("u", "Nor nested test folders.")])
    (root / "broken.py").write_text("def oops(:\n", encoding="utf-8")
    pairs = stdlib_pairs(root)
    assert len(pairs) == 6 * 4 + 1
    assert {p.package for p in pairs} == {f"pkg{p}" for p in range(6)} | {"solo"}
    split = split_by_package(pairs, test_size=6, val_size=3, seed=0)
    assert len(split.test) == 6 and len(split.val) == 3
    packages = [{p.package for p in part} for part in (split.train, split.val, split.test)]
    assert not (packages[0] & packages[1] or packages[0] & packages[2] or packages[1] & packages[2])
    again = split_by_package(pairs, test_size=6, val_size=3, seed=0)
    assert [p.name for p in again.test] == [p.name for p in split.test]
    with pytest.raises(DataError, match="ask for fewer"):
        split_by_package(pairs, test_size=len(pairs), val_size=1)
    assert isinstance(pairs[0], CodePair)
    with pytest.raises(DataError, match="not a folder"):
        stdlib_pairs(tmp_path / "nowhere")
