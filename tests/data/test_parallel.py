"""Parallel data: each parser on hand-made files, the group split, the user's pair files, the
dictd reader, the seq2seq collator, and the parsers on the real Debian data (skipped only where
the package is absent; ``make setup`` installs or unpacks every one)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from genlab.core.errors import DataError
from genlab.data import parallel, sources
from genlab.data.parallel import IGNORE_INDEX, Pair

# ------------------------------------------------------------------------------ help pages

_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title></head><body>
<div id="DisplayArea"><h1 id="hd_id1" dir="auto"><a name="x"></a>{h1}</h1>
<p id="par_id2" class="paragraph">{p2}<br>{p2b} <span class="emph">{emph}</span>.</p>
<p id="par_id3">{p3}</p>
<p id="par_id4">12345</p>
<p id="other">{other}</p>
</div></body></html>"""


def _help_tree(root: Path) -> tuple[Path, Path]:
    en, fr = root / "en-US", root / "fr"
    (en / "text/a").mkdir(parents=True)
    (fr / "text/a").mkdir(parents=True)
    (en / "text/a/page.html").write_text(
        _PAGE.format(
            title="T",
            h1="Creating a Dialog",
            p2="Choose",
            p2b="Tools -",
            emph="Macros",
            p3="Same text",
            other="not a paragraph",
        ),  # fmt: skip
        encoding="utf-8",
    )
    (fr / "text/a/page.html").write_text(
        _PAGE.format(
            title="T",
            h1="Créer un dialogue",
            p2="Choisissez",
            p2b="Outils -",
            emph="Macros",
            p3="Same text",
            other="pas un paragraphe",
        ),  # fmt: skip
        encoding="utf-8",
    )
    (en / "text/a/only-en.html").write_text(_PAGE.format(title="", h1="Alone", p2="a", p2b="b", emph="c", p3="d",
                                                         other=""), encoding="utf-8")  # fmt: skip
    return en, fr


def test_help_pairs_pair_paragraphs_by_id_and_page(tmp_path: Path) -> None:
    en, fr = _help_tree(tmp_path)
    pairs = parallel.libreoffice_help_pairs(en, fr)
    # par_id3 is untranslated (same text), par_id4 has no letter, "other" is no paragraph id,
    # only-en.html has no French page.
    assert pairs == [
        Pair("Creating a Dialog", "Créer un dialogue", "text/a/page.html"),
        Pair("Choose Tools - Macros.", "Choisissez Outils - Macros.", "text/a/page.html"),
    ]


def test_help_paragraph_ids_that_disagree_are_dropped(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text('<p id="par_id1">one</p><p id="par_id1">two</p><p id="par_id2">x</p><p id="par_id2">x</p>')
    assert parallel.help_paragraphs(page) == {"par_id2": "x"}


def test_help_pairs_need_common_pages(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "fr").mkdir()
    with pytest.raises(DataError, match="no help page is in both"):
        parallel.libreoffice_help_pairs(tmp_path / "en", tmp_path / "fr")


# ------------------------------------------------------------------------------ Ding

_DING = """# Version :: devel
# License :: GPL
Haus {n} | Das Haus ist groß. | Häuser {pl} :: house | The house is big. | houses
gehen {vi} | Wir gehen nach Hause.; Wir laufen heim. | ging :: to go | We are going home.; We walk home. | went
kaputt {adj} | Es ist kaputt. [ugs.] :: broken | It is broken. [coll.]
Eins | Zwei sind mehr. :: one
Ja. :: Yes.
Haus {n} | Das Haus ist groß. :: house | The big house.
"""


def test_ding_pairs_keep_example_sentences_of_matching_subentries(tmp_path: Path) -> None:
    path = tmp_path / "de-en"
    path.write_text(_DING, encoding="utf-8")
    pairs = parallel.ding_pairs(path)
    # "Eins" has unmatched sub-entry counts; "Ja." is too short; the second "Das Haus ist groß."
    # is a repeated source, kept once (its first translation).
    assert pairs == [
        Pair("Das Haus ist groß.", "The house is big.", "Haus"),
        Pair("Wir gehen nach Hause.", "We are going home.", "gehen"),
        Pair("Es ist kaputt.", "It is broken.", "kaputt"),
    ]


# ------------------------------------------------------------------------------ Debian descriptions

_TRANSLATION = """Package: foo
Description-md5: aaa
Description-en: frobnicate the widgets
 Foo frobnicates widgets quickly
 and safely.
 .
 It also has a mode:
   verbatim line
 .
 Last paragraph.

Package: foo-doc
Description-md5: bbb
Description-en: documentation for foo
 This package contains the documentation.

Package: foo-copy
Description-md5: aaa
Description-en: frobnicate the widgets
 Foo frobnicates widgets quickly
 and safely.

Package: lonely
Description-md5: ccc
Description-en: a synopsis without a long text

Package: bar
Description-md5: ddd
Description-en: bar tool
 Bar does things.
"""

_PACKAGES = """Package: foo
Version: 1.0
Description: frobnicate the widgets

Package: foo-doc
Source: foo (1.0-2)
Version: 1.0-2

Package: bar
Source: barsrc
"""


def test_debian_descriptions_pair_long_text_with_synopsis_grouped_by_source(tmp_path: Path) -> None:
    tr, pk = tmp_path / "x_i18n_Translation-en", tmp_path / "x_Packages.gz"
    tr.write_text(_TRANSLATION, encoding="utf-8")
    pk.write_bytes(gzip.compress(_PACKAGES.encode()))
    pairs = parallel.debian_description_pairs([tr], [pk])
    assert pairs == [
        Pair(
            "Foo frobnicates widgets quickly and safely.\nIt also has a mode:\nverbatim line\nLast paragraph.",
            "frobnicate the widgets",
            "foo",
        ),  # fmt: skip
        Pair("This package contains the documentation.", "documentation for foo", "foo"),
        Pair("Bar does things.", "bar tool", "barsrc"),
    ]


def test_deb822_records_keep_continuation_lines() -> None:
    records = list(parallel.deb822_records("A: 1\nB: two\n three\n\n\nA: 2\n"))
    assert records == [{"A": "1", "B": "two\n three"}, {"A": "2"}]


# ------------------------------------------------------------------------------ man pages

_MAN = r""".\" Copyright comment
.TH OPEN 2 2022-10-30 "Linux man-pages 6.03"
.SH NAME
open, openat \- open and possibly create a file
.SH SYNOPSIS
.nf
.B #include <fcntl.h>
.fi
.SH DESCRIPTION
The
.BR open ()
system call opens the file specified by
.IR pathname .
It may be \fBcreated\fP by
.BR open ().
.PP
The \(lqflags\(rq argument:
.TP
.B O_RDONLY
read only\-ish.
.TS
tab(;);
l l.
table;row
.TE
.SS Notes on x
Done.
.SH SEE ALSO
.BR close (2)
"""


def test_man_pages_pair_description_with_the_name_line(tmp_path: Path) -> None:
    (tmp_path / "open.2.gz").write_bytes(gzip.compress(_MAN.encode()))
    (tmp_path / "creat.2").write_text(".so man2/open.2\n")  # a link page: skipped
    (tmp_path / "nodesc.3").write_text(".TH X 3\n.SH NAME\nx \\- y\n")
    pairs = parallel.manpage_pairs(sorted(tmp_path.iterdir()))
    assert len(pairs) == 1
    assert pairs[0].tgt == "open and possibly create a file"
    assert pairs[0].group == "open"
    assert pairs[0].src == (
        "The open() system call opens the file specified by pathname. It may be created by open().\n"
        'The "flags" argument:\nO_RDONLY read only-ish.\nNotes on x\nDone.'
    )


def test_roff_sections_strip_macros_and_keep_sections() -> None:
    sections = parallel.roff_sections(_MAN)
    assert set(sections) == {"NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"}
    assert sections["SEE ALSO"] == "close(2)"
    assert sections["SYNOPSIS"] == "#include <fcntl.h>"


# ------------------------------------------------------------------------------ split


def test_split_by_group_is_deterministic_and_never_straddles() -> None:
    pairs = [Pair(f"s{i}", f"t{i}", f"g{i % 97}") for i in range(2000)]
    a = parallel.split_by_group(pairs, 0.1, 0.1)
    b = parallel.split_by_group(list(reversed(pairs)), 0.1, 0.1)
    assert sorted(a.test, key=lambda p: p.src) == sorted(b.test, key=lambda p: p.src)
    groups = [{p.group for p in part} for part in (a.train, a.validation, a.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    counts = a.counts()
    assert counts["train"] + counts["validation"] + counts["test"] == 2000
    assert counts["train_groups"] + counts["validation_groups"] + counts["test_groups"] == 97
    assert 2 <= counts["test_groups"] <= 20  # about 10% of 97 groups
    # a group's place depends on its name only: adding groups moves none
    more = parallel.split_by_group([*pairs, Pair("new", "new", "g-new")], 0.1, 0.1)
    assert {p.src for p in more.test} - {"new"} == {p.src for p in a.test}


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(DataError, match="sum below 1"):
        parallel.split_by_group([], 0.6, 0.5)


# ------------------------------------------------------------------------------ user files


def test_read_parallel_tsv_and_two_files(tmp_path: Path) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("hello\tbonjour\r\ncat\tchat\n", encoding="utf-8")
    assert parallel.read_parallel(tsv) == [Pair("hello", "bonjour", "1"), Pair("cat", "chat", "2")]
    src, tgt = tmp_path / "a.en", tmp_path / "a.fr"
    src.write_text("one\ntwo\n")
    tgt.write_text("un\ndeux\n")
    assert [(p.src, p.tgt) for p in parallel.read_parallel(src, tgt)] == [("one", "un"), ("two", "deux")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\tb\nno tab here\nc\td\n", r"line 2 has 0 tabs, not 1"),
        ("a\tb\nx\ty\tz\n", r"line 2 has 2 tabs, not 1"),
        ("a\tb\n\tonly target\n", r"line 2 has an empty source"),
        ("a\t \n", r"line 1 has an empty target"),
        ("", r"has no pairs"),
    ],
)
def test_read_parallel_names_the_first_bad_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        parallel.read_parallel(path)
    assert "\n" not in str(info.value)


def test_read_parallel_two_files_must_pair_up(tmp_path: Path) -> None:
    src, tgt = tmp_path / "s.txt", tmp_path / "t.txt"
    src.write_text("one\ntwo\nthree\n")
    tgt.write_text("un\ndeux\n")
    with pytest.raises(DataError, match=r"3 lines and .* 2: line 3 has no partner in .*t\.txt"):
        parallel.read_parallel(src, tgt)
    tgt.write_text("un\n\ntrois\n")
    with pytest.raises(DataError, match=r"line 2 of .*t\.txt is empty"):
        parallel.read_parallel(src, tgt)
    tgt.write_bytes(b"un\ndeux\ntr\xffois\n")
    with pytest.raises(DataError, match=r"line 3 is not valid UTF-8"):
        parallel.read_parallel(src, tgt)


def test_pairs_round_trip_through_jsonl(tmp_path: Path) -> None:
    pairs = [Pair("a\tb\nc", "é", "g")]
    path = parallel.write_pairs(tmp_path / "p.jsonl", pairs)
    assert parallel.read_pairs(path) == pairs
    path.write_text("not json\n")
    with pytest.raises(DataError, match="not a genlab pairs file"):
        parallel.read_pairs(path)


# ------------------------------------------------------------------------------ dictd


def _b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = alphabet[n % 64] + out
        n //= 64
        if n == 0:
            return out


def test_read_dictd_takes_the_first_sense(tmp_path: Path) -> None:
    entries = [
        ("00-database-info", "00-database-info\n  This is metadata\n"),
        ("cat", "cat /kæt/\n  chat, chatte; matou\n"),
        ("house", "house /haʊs/\n 1. maison <fem>\n 2. foyer\n"),
        ("Cat", "Cat\n  duplicate headword, ignored\n"),
    ]
    body, index = b"", []
    for word, text in entries:
        data = text.encode()
        index.append(f"{word}\t{_b64(len(body))}\t{_b64(len(data))}")
        body += data
    (tmp_path / "x.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    (tmp_path / "x.dict.dz").write_bytes(gzip.compress(body))
    assert parallel.read_dictd(tmp_path / "x.index", tmp_path / "x.dict.dz") == {"cat": "chat", "house": "maison"}


# ------------------------------------------------------------------------------ collator


def test_collate_seq2seq_pads_masks_and_shifts() -> None:
    batch = parallel.collate_seq2seq([([5, 6, 7], [8, 9, 1]), ([5], [1])], pad_id=0, decoder_start_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[8, 9, 1], [1, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["decoder_input_ids"].tolist() == [[0, 8, 9], [0, 1, 0]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_encode_pairs_with_a_task_prefix_then_collate() -> None:
    vocab = {w: i + 3 for i, w in enumerate(["translate", ":", "hello", "world", "bonjour", "le", "monde"])}
    encode_batch = lambda texts: [[vocab[w] for w in t.replace(":", " :").split()] + [1] for t in texts]
    examples = parallel.encode_pairs([Pair("hello world", "bonjour le monde", "g")], encode_batch, "translate: ")
    assert examples == [([3, 4, 5, 6, 1], [7, 8, 9, 1])]
    batch = parallel.collate_seq2seq(examples, pad_id=0, decoder_start_id=0)
    assert batch["decoder_input_ids"].tolist() == [[0, 7, 8, 9]]


def test_collate_seq2seq_truncation_policy() -> None:
    with pytest.raises(DataError, match="example 1's input has 4 tokens, more than 3"):
        parallel.collate_seq2seq([([1], [2]), ([1, 2, 3, 4], [2])], pad_id=0, decoder_start_id=0, max_source_len=3)
    cut = parallel.collate_seq2seq([([1, 2, 3, 4], [2, 3, 4])], 0, 0, max_source_len=3, max_target_len=2,
                                   truncation="cut")  # fmt: skip
    assert cut["input_ids"].tolist() == [[1, 2, 3]] and cut["labels"].tolist() == [[2, 3]]
    with pytest.raises(DataError, match="example 0 has an empty target"):
        parallel.collate_seq2seq([([1], [])], 0, 0)
    with pytest.raises(DataError, match="empty batch"):
        parallel.collate_seq2seq([], 0, 0)


# ------------------------------------------------------------------------------ sources


def test_pair_sources_build_jsonl_and_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "data"))
    ding = tmp_path / "de-en"
    ding.write_text(_DING, encoding="utf-8")
    monkeypatch.setattr(sources, "DING_FILE", ding)
    monkeypatch.setattr(sources, "DEB_EXTRACT_DIR", tmp_path / "no-debs")
    pairs = sources.load_pairs("ding-de-en")
    assert len(pairs) == 3
    built = tmp_path / "data" / "ding-de-en" / "pairs.jsonl"
    assert built.is_file() and json.loads(built.read_text().splitlines()[0])["group"] == "Haus"
    row = next(r for r in sources.status() if r["name"] == "ding-de-en")
    assert row["present"] and row["kind"] == "pairs"
    with pytest.raises(DataError, match="not text"):
        sources.read_text("ding-de-en")
    with pytest.raises(DataError, match="not pairs"):
        sources.load_pairs("kjv")


def test_missing_pair_source_names_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(sources, "LIBREOFFICE_HELP_DIR", tmp_path / "none")
    monkeypatch.setattr(sources, "DEB_EXTRACT_DIR", tmp_path / "none")
    with pytest.raises(DataError, match="genlab data prepare help-en-fr"):
        sources.load_pairs("help-en-fr")


# ------------------------------------------------------------------------------ real data


def _need(found: Path | None, package: str) -> Path:
    if found is None:
        pytest.skip(f"{package} is not installed here (make setup installs it)")
    return found


def test_real_libreoffice_help_pairs_up() -> None:
    found = _need(sources.SOURCES["help-en-fr"].system(), "libreoffice-help-en-us/fr")
    en, fr = sources.help_language_dirs(found)
    pairs = parallel.libreoffice_help_pairs(en / "text" / "smath", fr / "text" / "smath")  # one module: fast
    assert len(pairs) > 500
    assert any(p.src == "Formula" or "formula" in p.src for p in pairs)
    assert all(p.group.endswith(".html") for p in pairs)
    assert sum(p.src == p.tgt for p in pairs) == 0


def test_real_ding_example_sentences() -> None:
    path = _need(sources.SOURCES["ding-de-en"].system(), "trans-de-en")
    pairs = parallel.ding_pairs(path)
    assert 15_000 < len(pairs) < 30_000
    split = parallel.split_by_group(pairs).counts()
    assert split["test"] > 500 and split["validation"] > 500


def test_real_debian_descriptions() -> None:
    _need(sources.SOURCES["debian-descriptions"].system(), "apt's Translation-en index")
    pairs = parallel.debian_description_pairs(sources.apt_translation_files())
    assert len(pairs) > 30_000
    assert all(p.src and p.tgt and "\n" not in p.tgt for p in pairs[:1000])


def test_real_man_pages() -> None:
    _need(sources.SOURCES["manpages"].system(), "manpages / manpages-dev")
    pairs = parallel.manpage_pairs(sources.manpage_files())
    assert len(pairs) > 500
    by_name = {p.group: p for p in pairs}
    if "printf" in by_name:
        assert by_name["printf"].tgt == "formatted output conversion"
    macros = (".B ", ".BR ", ".IR ", ".PP", ".TP", ".SH")
    about_roff = ("man", "man-pages", "groff", "groff_man")  # these pages quote the macros as text
    text = [p.src for p in pairs if p.group not in about_roff]
    assert not any(line.startswith(macros) for src in text for line in src.split("\n"))
    assert not any("\\fB" in src or "\\fI" in src for src in text)
