"""Ingest: each reader, the path rules (symlinks out of a source are skipped), bad input, and
incremental re-ingest (a changed file is re-embedded, an unchanged one is not, a removed one goes)."""

from __future__ import annotations

import dataclasses
import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.errors import ConfigError, DataError
from genlab.core.registry import preset
from genlab.data.sources import PYTHON_DOC_SOURCES
from genlab.models.bert import Bert
from genlab.rag.ingest import (
    NotText,
    find_files,
    ingest,
    read_dictd,
    read_html,
    read_man,
    read_markdown,
    read_plain,
    read_rst,
)
from genlab.rag.store import Store
from genlab.runs.encoders import Encoder, wordpiece_tokenizer

DIM = 32


def tiny_encoder(name: str = "tiny") -> Encoder:
    """A random bert-micro with MiniLM's WordPiece vocabulary (fast to build; tests need no quality)."""
    tok = wordpiece_tokenizer("minilm")
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, block_size=256, n_embd=DIM)
    return Encoder(Bert(cfg).eval(), tok, 256, name)


class CountingEmbed:
    """Bag-of-words unit vectors (hashed words), and a record of every text embedded."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        out = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, zlib.crc32(w.encode()) % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text, encoding="utf-8")
    return path


# -------------------------------------------------------------------------------- readers

RST = """\
.. _faq:

=================
Programming FAQ
=================

.. contents::

General Questions
=================

Is there a debugger?
--------------------

Yes. See :mod:`pdb` and the ``breakpoint()`` built-in.

.. code-block:: python

   import pdb; pdb.set_trace()

Are there tools?
----------------

`Pylint <https://pylint.org>`_ checks code.
"""


def test_rst_headings_become_paths_and_markup_becomes_words():
    doc = read_rst(RST, "faq/programming.rst.txt")
    assert doc.title == "Programming FAQ"
    paths = [s.path for s in doc.sections]
    assert paths == [
        "Programming FAQ > General Questions > Is there a debugger?",
        "Programming FAQ > General Questions > Are there tools?",
    ]
    first = doc.sections[0].paragraphs
    assert first[0] == "Yes. See pdb and the breakpoint() built-in."
    assert first[1].startswith("    import pdb")  # code kept, as an indented block
    assert doc.sections[1].paragraphs == ["Pylint checks code."]


@pytest.mark.skipif(not (PYTHON_DOC_SOURCES / "faq" / "design.rst.txt").is_file(), reason="needs python3-doc")
def test_the_python_faq_sections_are_its_questions():
    from genlab.data.chat import python_faq_pairs

    path = PYTHON_DOC_SOURCES / "faq" / "design.rst.txt"
    doc = read_rst(path.read_text(encoding="utf-8"), "faq/design.rst.txt")
    questions = {r["prompt"] for r in python_faq_pairs(PYTHON_DOC_SOURCES) if r["item"].startswith("design.rst")}
    last = {s.path.split(" > ")[-1] for s in doc.sections}
    assert questions <= last  # every FAQ question is a section heading: the gold of genlab rag eval


def test_markdown_html_plain_and_man_readers():
    md = read_markdown("# Title\n\nIntro *text* with [a link](http://x).\n\n## Part\n\n```\ncode line\n```\n", "a.md")
    assert md.title == "Title" and [s.path for s in md.sections] == ["Title", "Title > Part"]
    assert md.sections[0].paragraphs == ["Intro text with a link."] and md.sections[1].paragraphs == ["    code line"]

    html = read_html(
        "<html><head><title>Page</title><style>p{}</style></head><body><h1>Top</h1><p>One &amp; two.</p>"
        '<script>alert(1)</script><h2>Sub<a class="headerlink" href="#s">¶</a></h2><p>Three</p><ul><li>four</li>'
        '</ul><div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><p>nav<br>text</p></div>'
        "<nav><p>more nav</p></nav></body></html>",
        "p.html",
    )
    assert html.title == "Page"
    assert [(s.path, s.paragraphs) for s in html.sections] == [
        ("Top", ["One & two."]),
        ("Top > Sub", ["Three", "four"]),
    ]

    plain = read_plain("First line\nof a paragraph.\n\nSecond paragraph.\n", "notes.txt")
    assert plain.title == "First line" and plain.sections[0].paragraphs == [
        "First line\nof a paragraph.",
        "Second paragraph.",
    ]

    man = read_man(
        ".TH LS 1\n.SH NAME\nls \\- list directory contents\n.SH DESCRIPTION\nList\n.B files\nsorted.\n", "man1/ls.1"
    )
    assert man.title.startswith("ls")
    assert [s.path for s in man.sections] == ["NAME", "DESCRIPTION"]
    assert "List files sorted." in man.sections[1].paragraphs[0]


def test_dictd_entries_are_documents(tmp_path):
    body = b"lambda\n\n   An anonymous function.\n"
    other = b"monad\n\n   A structure.\n"
    data = body + other

    def b64(n: int) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        out = ""
        while True:
            out = alphabet[n % 64] + out
            n //= 64
            if not n:
                return out

    write(tmp_path / "tiny.dict.dz", gzip.compress(data))
    index = write(
        tmp_path / "tiny.index", f"lambda\t{b64(0)}\t{b64(len(body))}\nmonad\t{b64(len(body))}\t{b64(len(other))}\n"
    )
    docs = read_dictd(index, "tiny")
    assert [d.doc_id for d, _ in docs] == ["tiny/lambda", "tiny/monad"]
    assert docs[0][0].sections[0].paragraphs == ["An anonymous function."]


# ------------------------------------------------------------------------------ the paths


def test_a_symlink_out_of_the_source_is_skipped_with_a_note(tmp_path):
    outside = write(tmp_path / "secret" / "passwords.txt", "do not read\n")
    src = tmp_path / "src"
    write(src / "a.txt", "Alpha.\n")
    (src / "link.txt").symlink_to(outside)
    (src / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    (src / "inner.txt").symlink_to(src / "a.txt")  # inside the source: followed
    found = find_files([src])
    assert sorted(f.rel for f in found.files) == ["a.txt", "inner.txt"]
    assert len(found.notes) == 2 and all("outside the source" in n for n in found.notes)


def test_missing_binary_and_empty_sources_are_refused(tmp_path, encoder):
    store = Store.open(tmp_path / "idx", create=True)
    with pytest.raises(DataError, match="does not exist"):
        ingest(store, encoder, [tmp_path / "nope"], progress=False)
    write(tmp_path / "blob.txt", b"\x00\x01binary")
    with pytest.raises(NotText, match="not a text file"):
        ingest(store, encoder, [tmp_path / "blob.txt"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no documents found"):
        ingest(store, encoder, [tmp_path / "empty"], progress=False)
    assert store.count() == (0, 0) and store.model() is None


# ---------------------------------------------------------------------------- incremental


def folder(root: Path) -> Path:
    write(root / "a.md", "# Alpha\n\nAlpha is the first letter. It starts the alphabet.\n")
    write(root / "b.rst", "Beta\n====\n\nBeta is the second letter.\n")
    write(root / "sub" / "c.txt", "Gamma notes.\n\nGamma is the third letter.\n")
    write(root / "picture.png", b"\x89PNG\x00\x00")  # skipped by its name
    write(root / "data.txt", b"\x00\x00\x00 binary inside a folder")  # skipped: not text
    return root


def test_reingest_embeds_only_what_changed_and_removes_what_disappeared(tmp_path, encoder):
    src = folder(tmp_path / "src")
    embed = CountingEmbed()
    with Store.open(tmp_path / "idx", create=True) as store:
        first = ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=embed)
        assert (first.added, first.changed, first.removed) == (3, 0, 0)
        assert first.notes == ["skipped data.txt: not a text file (it holds NUL bytes)"]
        ids = set(store.dense_ids().tolist())
        assert len(ids) == store.count()[1] == first.chunks
        assert {c.doc_id for c in store.all_chunks()} == {"a.md", "b.rst", "sub/c.txt"}

        embed.texts.clear()
        again = ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=embed)
        assert (again.added, again.changed, again.unchanged, again.chunks) == (0, 0, 3, 0)
        assert embed.texts == []

        write(src / "b.rst", "Beta\n====\n\nBeta is the second letter of the Greek alphabet.\n")
        (src / "sub" / "c.txt").unlink()
        (src / "a.md").touch()  # a new mtime, the same content: hashed, not re-embedded
        third = ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=embed)
        assert (third.added, third.changed, third.unchanged, third.removed) == (0, 1, 1, 1)
        assert all("Beta" in t for t in embed.texts) and embed.texts
        chunks = store.all_chunks()
        assert {c.doc_id for c in chunks} == {"a.md", "b.rst"}
        assert any("Greek" in c.text for c in chunks)
        assert set(store.dense_ids().tolist()) == {c.chunk_id for c in chunks}
        _, bm25_ids = store.bm25()
        assert set(bm25_ids.tolist()) == {c.chunk_id for c in chunks}
        assert min(c.chunk_id for c in chunks if c.doc_id == "b.rst") > max(ids)  # ids are never reused


def test_an_index_refuses_another_embedding_model(tmp_path, encoder):
    src = folder(tmp_path / "src")
    with Store.open(tmp_path / "idx", create=True) as store:
        ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=CountingEmbed())
        before = store.count()
        with pytest.raises(ConfigError, match="built with embeddings of tiny .* this uses other"):
            ingest(store, tiny_encoder("other"), [src], model_arg="other", progress=False, embed=CountingEmbed())
        assert store.count() == before


def test_sources_not_named_again_are_kept(tmp_path, encoder):
    one = folder(tmp_path / "one")
    two = write(tmp_path / "two" / "d.txt", "Delta.\n").parent
    with Store.open(tmp_path / "idx", create=True) as store:
        ingest(store, encoder, [one, two], model_arg="tiny", progress=False, embed=CountingEmbed())
        report = ingest(store, encoder, [two], model_arg="tiny", progress=False, embed=CountingEmbed())
        assert report.removed == 0 and store.count()[0] == 4


def test_an_index_keeps_its_heading_setting(tmp_path, encoder):
    src = folder(tmp_path / "src")
    embed = CountingEmbed()
    with Store.open(tmp_path / "idx", create=True) as store:
        ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=embed, headings=False)
        assert not store.headings and "Alpha is the first letter. It starts the alphabet." in embed.texts
        with pytest.raises(ConfigError, match="without their heading lines"):
            ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=embed, headings=True)
