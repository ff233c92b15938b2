"""Chat data: JSONL formats, the source parsers, templated questions, the checker, preferences, splits."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from genlab.core.errors import DataError
from genlab.data import chat as C
from genlab.data import sources as S


def test_jsonl_round_trip_and_malformed_lines_name_the_line(tmp_path: Path) -> None:
    conv = {"messages": C.conversation("hi?", "hello", system="be kind"), "source": "t"}
    pref = {"prompt": "p", "chosen": "a", "rejected": "b", "source": "t"}
    ques = {"prompt": "p", "answer": "a", "source": "t"}
    for rows, reader in (([conv], C.read_conversations), ([pref], C.read_preferences), ([ques], C.read_questions)):
        path = C.write_jsonl(tmp_path / "f.jsonl", rows)
        assert reader(path) == rows
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(pref) + "\n\n" + '{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: a preference needs a string 'rejected'"):
        C.read_preferences(bad)
    bad.write_text(json.dumps(pref) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        C.read_preferences(bad)
    bad.write_text(json.dumps({**pref, "rejected": "a"}) + "\n")
    with pytest.raises(DataError, match=r":1: 'chosen' and 'rejected' are the same"):
        C.read_preferences(bad)
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r":1: the conversation has no assistant message"):
        C.read_conversations(bad)
    bad.write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r":1: message 0 needs a 'role'"):
        C.read_conversations(bad)
    with pytest.raises(DataError, match="no file"):
        C.read_questions(tmp_path / "missing.jsonl")


def test_splits_follow_the_item_not_the_row() -> None:
    rows = [{"source": "elements", "item": f"e{i}", "prompt": f"q{i}{k}"} for i in range(300) for k in range(3)]
    split = C.with_splits(rows)
    by_item: dict[str, set[str]] = {}
    for r in split:
        by_item.setdefault(r["item"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_item.values())  # the paraphrases of an item share a split
    counts = {name: sum(r["split"] == name for r in split) for name in C.SPLITS}
    assert counts["train"] > 600 and counts["validation"] > 0 and counts["test"] > 0
    assert C.split_of("elements:e7") == C.split_of("elements:e7")


def test_python_faq_and_glossary_parsers(tmp_path: Path) -> None:
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "general.rst.txt").write_text(
        "General FAQ\n===========\n\nWhat is Python?\n---------------\n\nPython is a language; see "
        ":ref:`the tutorial <tutorial-index>` and ``print``.\n\n.. note:: dropped\n\n"
        "Why indentation?\n----------------\n\nGuido likes it.\n\nNext part\n=========\n\nnot an answer\n"
    )
    rows = C.python_faq_pairs(tmp_path)
    assert [(r["prompt"], r["answer"]) for r in rows] == [
        ("What is Python?", "Python is a language; see the tutorial and print."),
        ("Why indentation?", "Guido likes it."),
    ]
    assert {r["kind"] for r in rows} == {"real"} and rows[0]["item"] == "general.rst.txt#What is Python?"
    glossary = tmp_path / "glossary.rst.txt"
    glossary.write_text(
        "Glossary\n\n.. glossary::\n\n   ``>>>``\n      The default prompt.\n\n   duck-typing\n"
        "      A style that uses :func:`hasattr`\n      tests.\n"
    )
    g = C.python_glossary_pairs(glossary)
    assert [(r["prompt"], r["answer"]) for r in g] == [
        ("What is >>> in Python?", "The default prompt."),
        ("What is duck-typing in Python?", "A style that uses hasattr\ntests."),
    ]


def test_perlfaq_debian_faq_and_chatterbot_parsers(tmp_path: Path) -> None:
    (tmp_path / "perlfaq4.pod").write_text(
        "=head1 NAME\n\nperlfaq4\n\n=head2 How do I round a number?\n\nUse C<sprintf>.\n\n"
        "    printf('%.2f', $x);\n\n=head2 Why B<int()>?\n\nBecause.\n\n=head1 AUTHOR\n\nsomeone\n"
    )
    rows = C.perlfaq_pairs(tmp_path)
    assert [r["prompt"] for r in rows] == ["How do I round a number?", "Why int()?"]
    assert rows[0]["answer"] == "Use sprintf.\n\n    printf('%.2f', $x);" and rows[1]["answer"] == "Because."
    faq = tmp_path / "faq.txt.gz"
    faq.write_bytes(gzip.compress(
        b"1.1. In the table of contents\n\nChapter 1. Basics\n\n1.1. What is this FAQ?\n\n"
        b"    It answers questions.\n    Many.\n\n1.2. What is a long question that\nwraps?\n\n    Yes.\n"
    ))  # fmt: skip
    d = C.debian_faq_pairs(faq)
    assert [(r["prompt"], r["answer"], r["item"]) for r in d] == [
        ("What is this FAQ?", "It answers questions.\nMany.", "1.1"),
        ("What is a long question that wraps?", "Yes.", "1.2"),
    ]
    wheel = tmp_path / "corpus.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("chatterbot_corpus/data/english/ai.yml", "conversations:\n- - What is AI?\n  - Machines.\n  - Odd\n")
        z.writestr("chatterbot_corpus/data/french/ai.yml", "conversations:\n- - Quoi?\n  - Rien.\n")
    root = C.unpack_chatterbot(wheel, tmp_path / "cb")
    conv = C.chatterbot_conversations(root)
    assert conv == [{"messages": [{"role": "user", "content": "What is AI?"},
                                  {"role": "assistant", "content": "Machines."}],
                     "source": "chatterbot", "kind": "real", "item": "ai#0"}]  # fmt: skip


def _dictd(tmp_path: Path, name: str, entries: list[tuple[str, str]]) -> Path:
    data, index, pos = b"", [], 0

    def b64(n: int) -> str:
        digits = ""
        while True:
            digits = C._B64[n % 64] + digits
            n //= 64
            if n == 0:
                return digits

    for head, body in [("00-database-info", "meta\n"), *entries]:
        raw = body.encode()
        index.append(f"{head}\t{b64(pos)}\t{b64(len(raw))}")
        data, pos = data + raw, pos + len(raw)
    (tmp_path / f"{name}.dict.dz").write_bytes(gzip.compress(data))
    path = tmp_path / f"{name}.index"
    path.write_text("\n".join(index) + "\n")
    return path


def test_templated_questions_and_the_checker(tmp_path: Path) -> None:
    elements = _dictd(tmp_path, "elements", [
        ("hydrogen", "hydrogen\nSymbol: H\nAtomic number: 1\nAtomic weight: 1.0079\nA gas.\n\n"),
        ("gold", "gold\nSymbol: Au\nAtomic number: 79\nAtomic weight: 196.967\nA metal.\n\n"),
        ("unobtainium", "unobtainium\nSymbol: Uo\nAtomic number: 150\nAtomic weight: 400\n\n"),
    ])  # fmt: skip
    found = C.read_elements(elements)
    assert [e["symbol"] for e in found] == ["H", "Au"]  # Z > 103 is left out
    qs = C.element_questions(found)
    assert len(qs) == 6 and {q["kind"] for q in qs} == {"templated"}
    sym, num, wt = qs[3:6]  # gold
    assert sym["prompt"] == "What is the chemical symbol of Gold?" and sym["answer"] == "Au"
    assert C.check_answer(sym, "Au") and C.check_answer(sym, "The symbol is Au.") and not C.check_answer(sym, "Ag")
    assert not C.check_answer(sym, "A") and not C.check_answer(sym, "au pair")
    assert C.check_answer(num, "79") and C.check_answer(num, "It is 79.") and not C.check_answer(num, "78")
    assert C.check_answer(wt, "196.97") and not C.check_answer(wt, "190") and not C.check_answer(wt, "heavy")
    assert not C.check_answer(num, "I don't know") and C.is_abstention("I don't know.")
    assert (C.reward(num, "79"), C.reward(num, "I don't know."), C.reward(num, "12")) == (1.0, 0.0, -1.0)
    tr = C.translation_questions({"house": "maison", "a": "un", "ice cream": "glace"})
    assert [(q["prompt"], q["answer"]) for q in tr] == [('What is the French for "house"?', "maison")]
    assert C.check_answer(tr[0], "Maison.") and C.check_answer(tr[0], "la maison") and not C.check_answer(tr[0], "chat")
    foldoc = _dictd(tmp_path, "foldoc", [
        ("compiler", "compiler\n\n   1. <programming> A program that translates {source code} into object code.\n"),
        ("compilers", "compiler\n\n   1. <programming> An alias entry.\n"),
    ])  # fmt: skip
    fq = C.foldoc_questions(foldoc)
    assert [(q["prompt"], q["answer"]) for q in fq] == [
        ('Which computing term does FOLDOC define as: "A program that translates source code into object code."?',
         "compiler")]  # fmt: skip
    assert "compiler" in C.dictd_text(foldoc)


def test_preferences_are_labelled_by_how_they_were_made() -> None:
    q = {"prompt": "What is the atomic number of Gold?", "answer": "79", "source": "elements", "check": "integer",
         "item": "gold"}  # fmt: skip
    pairs = C.checker_preferences(q, ["79", "80", "I don't know", "80", "81"])
    got = {(p["judgement"], p["chosen"], p["rejected"]) for p in pairs}
    assert got == {
        ("correct>wrong", "79", "80"), ("abstain>wrong", C.ABSTAIN, "80"),
        ("correct>wrong", "79", "81"), ("abstain>wrong", C.ABSTAIN, "81"),
        ("correct>abstain", "79", C.ABSTAIN),
    }  # fmt: skip
    assert all(p["kind"] == "programmatic" and p["source"] == "checker:elements" for p in pairs)
    assert C.checker_preferences(q, ["5"])[0]["chosen"] == "79"  # the reference answer when no sample is right
    rows = [{"prompt": f"q{i}", "answer": f"a{i}", "source": "perlfaq", "split": "train"} for i in range(5)]
    faq = C.faq_preferences([*rows, {"prompt": "t", "answer": "secret", "source": "perlfaq", "split": "test"}])
    assert len(faq) == 5 and all(p["chosen"] == f"a{p['prompt'][1:]}" != p["rejected"] for p in faq)
    assert all(p["rejected"] != "secret" for p in faq)  # never across splits
    assert C.user_preference("p", "A", "B", "b")["chosen"] == "B"
    with pytest.raises(DataError, match="choose 'a' or 'b'"):
        C.user_preference("p", "A", "B", "c")


def test_mixture_follows_the_shares() -> None:
    texts = {"big": "\n\n".join(f"big doc {i}" for i in range(1000)), "small": "tiny one\n\nsmall two"}
    out = C.mixture(texts, {"big": 0.5, "small": 0.5}, 4000)
    docs = out.strip().split("\n\n")
    small = sum(len(d) for d in docs if not d.startswith("big"))
    big = sum(len(d) for d in docs if d.startswith("big"))
    assert 0.8 < small / big < 1.25  # the small source is repeated up to its share
    assert C.mixture(texts, {"big": 0.5, "small": 0.5}, 4000) == out  # seeded
    with pytest.raises(DataError, match="no text"):
        C.mixture(texts, {"nope": 1.0}, 10)


def test_chat_sources_are_listed() -> None:
    names = {r["name"]: r for r in S.status()}
    for name in ("python-docs", "foldoc", "jargon", "elements", "chat-pretrain", "python-faq", "python-glossary",
                 "perlfaq", "debian-faq", "chatterbot", "chat-questions", "faq-preferences"):  # fmt: skip
        assert name in names
    with pytest.raises(DataError, match="not a chat source"):
        S.load_chat("kjv")
    with pytest.raises(DataError, match="load_chat"):
        S.read_text("perlfaq")


@pytest.mark.skipif(S.SOURCES["python-faq"].system() is None, reason="python3-doc is not installed")
def test_real_python_faq_split_by_question() -> None:
    rows = S.load_chat("python-faq")
    assert len(rows) > 100 and {r["kind"] for r in rows} == {"real"}
    assert {r["split"] for r in rows} == set(C.SPLITS)
    assert any(r["messages"][0]["content"] == "What is Python?" for r in rows)


@pytest.mark.skipif(S.SOURCES["chat-questions"].system() is None, reason="dict-elements is not installed")
def test_real_element_questions_check_their_own_answers() -> None:
    rows = [r for r in S.load_chat("chat-questions") if r["source"] == "elements"]
    assert len(rows) == 3 * 103
    assert all(C.check_answer(r, r["answer"]) for r in rows)
