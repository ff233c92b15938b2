"""Span-QA pairs: templated questions over real text, with spans that are verbatim in their contexts."""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.core.errors import DataError
from genlab.data.chat import split_of
from genlab.data.span_qa import (
    KIND,
    definition_span,
    dictionary_examples,
    element_examples,
    entry_context,
    faq_examples,
    first_sentence,
    span_qa_examples,
)

ELEMENTS = Path("/usr/share/dictd/elements.index")

FOLDOC_ENTRY = """legacy system
legacy

   <jargon> A computer system or {application program} which
   continues to be used because of the cost of replacing it.  The
   implication is that the system is large.

   (1997-02-17)
"""
JARGON_ENTRY = """leech


    1. n. (Also leecher.) Among BBS types, crackers and {warez d00dz}, one who
    consumes knowledge without generating new software. BBS culture defines it.

    2. v. To download a file.
"""


def test_first_sentence():
    text = "Python is a programming language. It is popular."
    assert text[slice(*first_sentence(text))] == "Python is a programming language."
    assert first_sentence("Too short.") is None
    longer = "x" * 5 + ". " + text
    assert longer[slice(*first_sentence(longer, 7))] == "Python is a programming language."


def test_faq_examples_span_is_the_answers_first_sentence():
    rows = [{"prompt": "What is Python?", "answer": "Python is an interpreted,\ninteractive language. More text.",
             "source": "python-faq", "item": "general.rst.txt#What is Python?"}]  # fmt: skip
    (ex,) = faq_examples(rows)
    assert ex.question == "What is Python?"
    assert ex.answer == "Python is an interpreted,\ninteractive language."
    assert ex.context[ex.answer_start : ex.answer_end] == ex.answer
    assert ex.split == split_of("python-faq:general.rst.txt#What is Python?")
    assert ex.to_dict()["kind"] == KIND == "templated questions over real text"


def test_dictionary_definition_spans_skip_labels():
    ctx = entry_context(FOLDOC_ENTRY)
    assert "{" not in ctx and ctx.startswith("legacy system legacy\n\n<jargon> A computer system")
    assert ctx[slice(*definition_span(ctx))] == (
        "A computer system or application program which continues to be used because of the cost of replacing it."
    )
    ctx = entry_context(JARGON_ENTRY)
    assert ctx[slice(*definition_span(ctx))].startswith("Among BBS types, crackers and warez d00dz, one who")
    exs = dictionary_examples([("legacy system", FOLDOC_ENTRY), ("legacy", FOLDOC_ENTRY), ("leech", JARGON_ENTRY)],
                              "foldoc")  # fmt: skip
    assert [e.question for e in exs] == ["What is legacy system?", "What is leech?"]  # the alias is skipped
    assert all(e.context[e.answer_start : e.answer_end] == e.answer for e in exs)


@pytest.mark.skipif(not ELEMENTS.is_file(), reason="needs Debian dict-elements")
def test_element_examples_on_the_real_dictionary():
    exs = element_examples(ELEMENTS)
    assert len(exs) == 3 * 103
    iron = {e.question: e.answer for e in exs if e.item == "iron"}
    assert iron == {"What is the chemical symbol of Iron?": "Fe", "What is the atomic number of Iron?": "26",
                    "What is the atomic weight of Iron?": iron["What is the atomic weight of Iron?"]}  # fmt: skip
    assert iron["What is the atomic weight of Iron?"].startswith("55.8")
    assert all(e.context[e.answer_start : e.answer_end] == e.answer for e in exs)
    # all three questions about one element share its split, the chat data's split
    assert {e.split for e in exs if e.item == "iron"} == {split_of("elements:iron")}


@pytest.mark.skipif(not Path("/usr/share/dictd/jargon.index").is_file(), reason="needs Debian dict-jargon")
def test_span_qa_examples_from_the_corpora():
    exs = span_qa_examples(("jargon", "elements"), dictionary_limit=200)
    assert {e.source for e in exs} == {"jargon", "elements"}
    assert sum(e.source == "jargon" for e in exs) == 200
    assert {e.split for e in exs} == {"train", "validation", "test"}
    assert all(e.context[e.answer_start : e.answer_end] == e.answer and e.answer.strip() == e.answer for e in exs)
    with pytest.raises(DataError, match="unknown span-QA source 'wiki'"):
        span_qa_examples(("wiki",))
