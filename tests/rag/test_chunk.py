"""Chunking: budgets, headings, paragraph boundaries, sentence-aligned overlaps."""

from __future__ import annotations

import pytest

from genlab.rag.chunk import Document, Section, chunk_document, heading_line, split_sentences, wordpiece_counter
from genlab.runs.encoders import wordpiece_tokenizer


def words(texts):
    """One token per whitespace-separated word: a counter whose arithmetic a test can do by hand."""
    return [len(t.split()) for t in texts]


def sentence(i: int, n: int = 5) -> str:
    return " ".join([f"S{i}"] + [f"w{i}x{j}" for j in range(n - 2)] + [f"end{i}."])


def test_split_sentences_and_code_lines():
    assert split_sentences("One two. Three four! Five? six.") == ["One two.", "Three four!", "Five? six."]
    assert split_sentences("    a = 1\n    b = 2") == ["    a = 1", "    b = 2"]


def test_every_chunk_fits_the_budget_and_a_heading_starts_a_new_chunk():
    doc = Document("d", "T", [
        Section("T > A", [" ".join(sentence(i) for i in range(10))]),
        Section("T > B", [sentence(50)]),
    ])  # fmt: skip
    out = chunk_document(doc, words, max_tokens=20, overlap=0)
    for p in out:
        assert p.tokens + words([heading_line("T", p.section)])[0] <= 20
        assert p.tokens == len(p.text.split())
    assert [p.position for p in out] == list(range(len(out)))
    b = [p for p in out if p.section == "T > B"]
    assert len(b) == 1 and b[0].text == sentence(50)  # B is not glued to A's last chunk
    assert all("S50" not in p.text for p in out if p.section == "T > A")


def test_a_cut_inside_a_paragraph_overlaps_by_whole_sentences():
    para = " ".join(sentence(i) for i in range(12))  # 12 sentences of 5 tokens
    doc = Document("d", "", [Section("", [para])])
    out = chunk_document(doc, words, max_tokens=22, overlap=6)
    assert len(out) > 2
    sents = split_sentences(para)
    for prev, nxt in zip(out, out[1:]):
        a, b = split_sentences(prev.text), split_sentences(nxt.text)
        assert b[0] in sents  # a chunk starts at a sentence start, never mid-sentence
        assert b[0] == a[-1]  # one 5-token sentence of overlap (6 allowed; two would be 10)
        assert b[1] not in a
    covered = [s for p in out for s in split_sentences(p.text)]
    assert sorted(set(covered), key=sents.index) == sents  # nothing lost, order kept


def test_without_overlap_consecutive_chunks_share_nothing():
    para = " ".join(sentence(i) for i in range(12))
    out = chunk_document(Document("d", "", [Section("", [para])]), words, max_tokens=22, overlap=0)
    got = [s for p in out for s in split_sentences(p.text)]
    assert got == split_sentences(para)


def test_a_paragraph_boundary_within_reach_is_preferred_to_a_sentence_cut():
    p1 = " ".join(sentence(i) for i in range(3))  # 15 tokens
    p2 = " ".join(sentence(i) for i in range(3, 6))  # 15 tokens
    out = chunk_document(Document("d", "", [Section("", [p1, p2])]), words, max_tokens=24, overlap=8)
    # greedy sentence packing would put 4 sentences (20 tokens) in the first chunk; the paragraph
    # boundary at 15 tokens keeps at least half the budget, so the cut goes there, with no overlap
    assert [p.text for p in out] == [p1, p2]


def test_a_sentence_longer_than_the_budget_is_split_at_words():
    long = " ".join(f"w{j}" for j in range(50)) + "."
    out = chunk_document(Document("d", "", [Section("", [long, sentence(1)])]), words, max_tokens=16, overlap=4)
    assert all(p.tokens <= 16 for p in out)
    assert " ".join(p.text for p in out).split() == long.split() + sentence(1).split()  # no overlap mid-sentence


def test_empty_sections_give_no_chunk_and_bad_settings_are_refused():
    assert chunk_document(Document("d", "T", [Section("T", ["", "  "])]), words) == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(Document("d", "", [Section("", ["a."])]), words, max_tokens=20, overlap=20)
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_document(Document("d", "", [Section("", ["a."])]), words, max_tokens=4)


def test_wordpiece_counts_add_up_to_the_passage_token_count():
    tok = wordpiece_tokenizer("minilm")
    count = wordpiece_counter(tok)
    text = (
        "Python uses indentation for grouping. Guido van Rossum believes it is elegant! Does it help? "
        "Because there are no begin/end brackets, there cannot be a disagreement between grouping perceived "
        "by the parser and the human reader."
    )
    out = chunk_document(Document("faq/design", "Design FAQ", [Section("Design FAQ > Indentation", [text] * 4)]),
                         count, max_tokens=60, overlap=16)  # fmt: skip
    assert len(out) > 1
    for p in out:
        assert p.tokens == len(tok.encode(p.text))
        assert len(tok.encode(p.indexed_text("Design FAQ"))) <= 60
        assert p.indexed_text("Design FAQ").startswith("Design FAQ > Indentation\n")
