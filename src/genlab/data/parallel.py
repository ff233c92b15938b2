"""Parallel text: translation and summarisation pairs, their splits, and the seq2seq batch collator.

A :class:`Pair` is a source text, a target text and a *group*: the unit that must never straddle
the train / validation / test split. Near-duplicates live inside one group (the paragraphs of one
help page, the sentences of one dictionary entry, the binary packages of one source package), so
splitting by group keeps them out of the test set when their sibling was trained on:

    split(group) = test        if u < test_fraction
                   validation  if u < test_fraction + val_fraction
                   train       otherwise,       u = sha256(salt + ":" + group) / 2**256

which is deterministic, independent of the order or number of pairs, and stable when pairs are
added (a group never moves).

Parsers, each over the files a Debian package installs (all real text):

- :func:`libreoffice_help_pairs`: LibreOffice's help pages in English and French
  (``libreoffice-help-en-us``, ``libreoffice-help-fr``: one HTML page per help file, the same
  relative path in each language). Each ``<p id="par_id...">`` / ``<hN id="hd_id...">`` element
  is a paragraph; the two languages pair up by (page, id). Group: the page's path.
- :func:`ding_pairs`: the example sentences of the Ding German-English dictionary
  (``trans-de-en``): lines ``german | german ... :: english | english ...`` whose sub-entries
  pair up by position; a sub-entry whose both sides are sentences is kept. Group: the entry
  (its first German sub-entry).
- :func:`debian_description_pairs`: each package's long description (source) and its one-line
  synopsis (target), from apt's English description index ``*_i18n_Translation-en*``. Group: the
  source package (from the ``Packages`` index; the binary package's own name where none is known).
- :func:`manpage_pairs`: man pages' DESCRIPTION section (source, roff macros stripped) and the
  NAME line's description after ``\\-`` (target). Group: the page's name (``open.2`` and
  ``open.3p`` stay together).

Within a parser a source text is kept once (the first, in sorted file order), so no input is both
trained on and tested. :func:`read_parallel` reads the user's own pairs (``src<TAB>tgt`` lines,
or two line-aligned files) and names the first line that does not pair up.

:func:`collate_seq2seq` pads (input_ids, labels) examples into the tensors an encoder-decoder
takes: ``input_ids``, ``attention_mask``, ``labels`` (-100 at padding), ``decoder_input_ids``
(labels shifted right behind a start token) and ``decoder_attention_mask``; :func:`encode_pairs`
turns pairs into those examples with a tokenizer's ``encode_batch`` and an optional task prefix.

Axes: B batch, S source length, T target length.

Tier 1: imports only ``genlab.core``, numpy, torch and the standard library.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import torch

from genlab.core.errors import DataError

#: Label value the loss ignores (PyTorch's ``cross_entropy`` default, Hugging Face's convention).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Pair:
    src: str
    tgt: str
    group: str  # the split unit: help page, dictionary entry, source package, man page name


@dataclass
class ParallelSplit:
    train: list[Pair] = field(default_factory=list)
    validation: list[Pair] = field(default_factory=list)
    test: list[Pair] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Pairs per split and the groups behind them."""
        out = {}
        for name in ("train", "validation", "test"):
            part = getattr(self, name)
            out[name] = len(part)
            out[f"{name}_groups"] = len({p.group for p in part})
        return out


# ------------------------------------------------------------------------------------------
# The split.


def group_fraction(group: str, salt: str = "genlab") -> float:
    """u in [0, 1) from the sha256 of ``salt:group`` (same value on every machine and run)."""
    digest = hashlib.sha256(f"{salt}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_group(
    pairs: Iterable[Pair], val_fraction: float = 0.05, test_fraction: float = 0.05, salt: str = "genlab"
) -> ParallelSplit:
    """Train / validation / test by a hash of each pair's group (module docstring); order is kept."""
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise DataError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 and sum below 1")
    split = ParallelSplit()
    memo: dict[str, float] = {}
    for p in pairs:
        u = memo.get(p.group)
        if u is None:
            u = memo[p.group] = group_fraction(p.group, salt)
        if u < test_fraction:
            split.test.append(p)
        elif u < test_fraction + val_fraction:
            split.validation.append(p)
        else:
            split.train.append(p)
    return split


def _first_per_source(pairs: Iterable[Pair]) -> list[Pair]:
    """Each source text once (its first pair): an input is never both trained on and tested."""
    seen: set[str] = set()
    out = []
    for p in pairs:
        if p.src not in seen:
            seen.add(p.src)
            out.append(p)
    return out


_WS = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


# ------------------------------------------------------------------------------------------
# LibreOffice help (en-US / fr): paragraphs paired by (page, id).

_HELP_ID = re.compile(r"^(par|hd)_id")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                   "wbr"})  # fmt: skip


class _HelpParagraphs(HTMLParser):
    """Text of each element whose id starts with ``par_id`` / ``hd_id`` (nested ids join the outer one)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[tuple[str, str]] = []
        self._id: str | None = None
        self._depth = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if self._id is not None and tag == "br":
                self._text.append(" ")
            return
        if self._id is not None:
            self._depth += 1
            return
        ident = dict(attrs).get("id") or ""
        if _HELP_ID.match(ident):
            self._id, self._depth, self._text = ident, 1, []

    def handle_endtag(self, tag: str) -> None:
        if self._id is None or tag in _VOID:
            return
        self._depth -= 1
        if self._depth == 0:
            self.paragraphs.append((self._id, _clean("".join(self._text))))
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._id is not None:
            self._text.append(data)


def help_paragraphs(path: Path) -> dict[str, str]:
    """id -> text of one help page; an id whose copies disagree is dropped (it cannot pair up)."""
    parser = _HelpParagraphs()
    try:
        parser.feed(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read help page {path} ({exc}): reinstall the help package") from exc
    parser.close()
    out: dict[str, str] = {}
    bad: set[str] = set()
    for ident, text in parser.paragraphs:
        if ident in out and out[ident] != text:
            bad.add(ident)
        out.setdefault(ident, text)
    return {k: v for k, v in out.items() if k not in bad}


def libreoffice_help_pairs(en_dir: Path, fr_dir: Path) -> list[Pair]:
    """(English paragraph, French paragraph) pairs of the pages present in both folders.

    Kept: both sides non-empty with a letter, and different (an untranslated paragraph is the
    English text again). Pages in sorted path order, paragraphs in page order.
    """
    en_dir, fr_dir = Path(en_dir), Path(fr_dir)
    pages = sorted(p.relative_to(en_dir) for p in en_dir.rglob("*.html") if (fr_dir / p.relative_to(en_dir)).is_file())
    if not pages:
        raise DataError(f"no help page is in both {en_dir} and {fr_dir}: point to the en-US and fr help folders")
    pairs = []
    for rel in pages:
        fr = help_paragraphs(fr_dir / rel)
        for ident, en_text in help_paragraphs(en_dir / rel).items():
            fr_text = fr.get(ident)
            if fr_text and en_text != fr_text and _LETTER.search(en_text) and _LETTER.search(fr_text):
                pairs.append(Pair(en_text, fr_text, rel.as_posix()))
    return _first_per_source(pairs)


# ------------------------------------------------------------------------------------------
# Ding (trans-de-en): example sentences.

_DING_NOTE = re.compile(r"\s*(\{[^{}]*\}|\[[^\[\]]*\])")
_SENTENCE_END = re.compile(r"[.!?…][\"'”“»«)]*$")


def _ding_clean(text: str) -> str:
    return _clean(_DING_NOTE.sub("", text))


def _is_sentence(text: str, min_words: int) -> bool:
    return bool(text) and (text[0].isupper() or text[0] in "\"'„“»«(0123456789") and \
        bool(_SENTENCE_END.search(text)) and len(text.split()) >= min_words  # fmt: skip


def ding_pairs(path: Path, min_words: int = 3) -> list[Pair]:
    """(German sentence, English sentence) pairs from a Ding dictionary file.

    A line ``de_1 | de_2 ... :: en_1 | en_2 ...`` is one entry; sub-entries pair by position (a line
    whose two sides have different counts is skipped). Synonyms within a sub-entry are separated
    by ``;``: the first of each side is kept. Annotations ``{...}`` and ``[...]`` are removed. A
    sub-entry is kept when both sides start like a sentence, end with ``.``, ``!``, ``?`` or ``…``
    and have at least ``min_words`` words. Lines starting with ``#`` are comments.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the Ding dictionary {path} ({exc}): reinstall trans-de-en") from exc
    pairs = []
    for line in lines:
        if line.startswith("#") or " :: " not in line:
            continue
        de_side, en_side = line.split(" :: ", 1)
        de_parts, en_parts = de_side.split(" | "), en_side.split(" | ")
        if len(de_parts) != len(en_parts):
            continue
        entry = _ding_clean(de_parts[0].split(";")[0])
        for de, en in zip(de_parts, en_parts):
            de, en = _ding_clean(de.split("; ")[0]), _ding_clean(en.split("; ")[0])
            if _is_sentence(de, min_words) and _is_sentence(en, min_words):
                pairs.append(Pair(de, en, entry))
    return _first_per_source(pairs)


# ------------------------------------------------------------------------------------------
# Debian package descriptions: long description -> synopsis.

#: apt's command that decompresses any index it wrote (lz4, zstd, xz, gz ...).
APT_HELPER = "/usr/lib/apt/apt-helper"


def read_apt_index(path: Path) -> str:
    """The text of an apt list file, decompressed by its extension (``.lz4``/``.zst`` via apt-helper)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes()).decode("utf-8")
        if path.suffix == ".xz":
            return lzma.decompress(path.read_bytes()).decode("utf-8")
        if path.suffix in (".lz4", ".zst", ".bz2"):
            helper = APT_HELPER if Path(APT_HELPER).is_file() else None
            tool = {".lz4": "lz4cat", ".zst": "zstdcat", ".bz2": "bzcat"}[path.suffix]
            command = [helper, "cat-file", str(path)] if helper else [shutil.which(tool) or tool, str(path)]
            result = subprocess.run(command, capture_output=True, timeout=300, check=True)
            return result.stdout.decode("utf-8")
        return path.read_text(encoding="utf-8")
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError, subprocess.SubprocessError) as exc:
        raise DataError(f"cannot read apt index {path} ({exc}): run apt-get update again") from exc


def deb822_records(text: str) -> Iterator[dict[str, str]]:
    """Records of a Debian control-style file; a field's continuation lines are kept, newline-joined."""
    for block in re.split(r"\n\s*\n", text):
        record: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if line[:1] in (" ", "\t") and key is not None:
                record[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                record[key] = value.strip()
        if record:
            yield record


def long_description_text(lines: str) -> str:
    """A long description's continuation lines as text: lines of a paragraph joined by spaces,
    paragraphs (`` .`` lines) by newlines; verbatim lines (two leading spaces) keep a line each."""
    paragraphs: list[list[str]] = [[]]
    for raw in lines.split("\n"):
        if not raw.strip():
            continue
        if raw.strip() == ".":
            paragraphs.append([])
        elif raw.startswith("  "):
            paragraphs.append([raw.strip()])
            paragraphs.append([])
        else:
            paragraphs[-1].append(raw.strip())
    return "\n".join(" ".join(p) for p in paragraphs if p)


def debian_description_pairs(translation_files: Sequence[Path], packages_files: Sequence[Path] = ()) -> list[Pair]:
    """(long description, synopsis) pairs of apt's English description index.

    ``packages_files`` (apt's ``*_Packages*`` lists) map each binary package to its source package,
    the group; a package they do not name is its own group. A description shared by packages
    (same md5) is kept once.
    """
    source_of: dict[str, str] = {}
    for path in packages_files:
        for rec in deb822_records(read_apt_index(path)):
            if "Package" in rec:
                source_of[rec["Package"]] = rec.get("Source", rec["Package"]).split(" ")[0]
    pairs = []
    seen_md5: set[str] = set()
    for path in translation_files:
        for rec in deb822_records(read_apt_index(path)):
            desc, md5, pkg = rec.get("Description-en"), rec.get("Description-md5", ""), rec.get("Package")
            if desc is None or pkg is None or md5 in seen_md5:
                continue
            seen_md5.add(md5)
            synopsis, _, rest = desc.partition("\n")
            long_text = long_description_text(rest)
            synopsis = _clean(synopsis)
            if long_text and synopsis:
                pairs.append(Pair(long_text, synopsis, source_of.get(pkg, pkg)))
    return _first_per_source(pairs)


# ------------------------------------------------------------------------------------------
# Man pages: DESCRIPTION section -> NAME line.

_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes \fB \fI \fR \fP \f(CW \f[B]
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # strings \*(lq
    (re.compile(r"\\[&:%|^/,)]"), ""),  # zero-width and spacing escapes
    (re.compile(r"\\\(em|\\\[em\]"), "—"),
    (re.compile(r"\\\(en|\\\[en\]"), "–"),
    (re.compile(r"\\\((aq|cq)|\\\[aq\]"), "'"),
    (re.compile(r"\\\((dq|lq|rq)|\\\[(dq|lq|rq)\]"), '"'),
    (re.compile(r"\\\(bu|\\\[bu\]"), "•"),
    (re.compile(r"\\\(.."), ""),  # other named glyphs
    (re.compile(r"\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[-e]"), lambda m: "-" if m.group(0) == "\\-" else "\\"),
    (re.compile(r"\\ "), " "),
    (re.compile(r"\\c$"), ""),
]
_FONT_MACROS = frozenset({"B", "I", "SM", "SB"})
_ALTERNATING = frozenset({"BR", "RB", "BI", "IB", "IR", "RI"})
_BREAKS = frozenset({"PP", "P", "LP", "TP", "IP", "HP", "sp", "br", "TQ", "EX", "EE", "nf", "fi", "RS", "RE", "in"})


def roff_inline(text: str) -> str:
    """Text with roff escapes removed or replaced by their characters."""
    for pattern, repl in _ROFF_ESCAPES:
        text = pattern.sub(repl, text)
    return text


def _macro_args(rest: str) -> list[str]:
    """Macro arguments: whitespace-separated, double quotes group."""
    return [a if a else "" for a in (m.group(1) if m.group(1) is not None else m.group(2)
                                     for m in re.finditer(r'"([^"]*)"|(\S+)', rest))]  # fmt: skip


def roff_sections(source: str) -> dict[str, str]:
    """Section title (upper case) -> plain text of a man page's roff source.

    Font macros (``.B``, ``.I``, ``.BR`` ...) keep their text (alternating ones without spaces);
    paragraph macros (``.PP``, ``.TP``, ``.IP`` ...) break paragraphs (``.IP``'s tag is kept);
    tables (``.TS``..``.TE``), comments and every other request are dropped.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_table = False
    for line in source.split("\n"):
        if line.startswith(('.\\"', "'\\\"", '.\\\\"')) or line.startswith('\\"'):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name == "TS":
                in_table = True
            elif name == "TE":
                in_table = False
            if in_table:
                continue
            if name in ("SH", "SS"):
                title = roff_inline(" ".join(_macro_args(rest))).strip().upper()
                if name == "SH":
                    current = sections.setdefault(title, [])
                elif current is not None:
                    current.append("\n" + title.capitalize() + "\n")
                continue
            if current is None:
                continue
            if name in _FONT_MACROS:
                current.append(roff_inline(" ".join(_macro_args(rest))))
            elif name in _ALTERNATING:
                current.append(roff_inline("".join(_macro_args(rest))))
            elif name in _BREAKS:
                current.append("\n")
                if name == "IP" and rest.strip():
                    args = _macro_args(rest)
                    if args and args[0]:
                        current.append(roff_inline(args[0]))
            continue
        if in_table or current is None:
            continue
        current.append(roff_inline(line))
    out = {}
    for title, parts in sections.items():
        paragraphs = [_clean(p) for p in " ".join(parts).split("\n")]
        out[title] = "\n".join(p for p in paragraphs if p)
    return out


def _read_man(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def manpage_pairs(paths: Iterable[Path]) -> list[Pair]:
    """(DESCRIPTION text, NAME description) pairs of man page files (``.gz`` or plain roff).

    The NAME line ``open, openat \\- open and possibly create a file`` gives the target after
    ``\\-``; pages that only include another (``.so``) or lack either section are skipped. Group:
    the file's page name without section (``open.2.gz`` -> ``open``).
    """
    pairs = []
    for path in sorted(Path(p) for p in paths):
        try:
            source = _read_man(path)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"cannot read man page {path} ({exc}): reinstall its package") from exc
        if source.lstrip().startswith(".so "):
            continue
        sections = roff_sections(source)
        name_line, description = sections.get("NAME", ""), sections.get("DESCRIPTION", "")
        _, dash, summary = name_line.replace(" – ", " - ").replace(" — ", " - ").partition(" - ")
        summary = _clean(summary)
        if dash and summary and description:
            page = path.name.removesuffix(".gz")
            pairs.append(Pair(description, summary, page.split(".")[0]))
    return _first_per_source(pairs)


# ------------------------------------------------------------------------------------------
# Stored pairs (what a prepared source holds) and the user's own files.


def write_pairs(path: Path, pairs: Iterable[Pair]) -> Path:
    """Write pairs as JSON lines ``{"src", "tgt", "group"}`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps({"src": p.src, "tgt": p.tgt, "group": p.group}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_pairs(path: Path) -> list[Pair]:
    """The pairs :func:`write_pairs` wrote."""
    pairs = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                pairs.append(Pair(row["src"], row["tgt"], row["group"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a genlab pairs file ({exc}): delete it and prepare the source again") from exc
    return pairs


def _read_lines(path: Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}): check the path and its permissions") from exc
    except UnicodeDecodeError as exc:
        line = text_line_of(Path(path).read_bytes(), exc.start)
        raise DataError(f"{path} line {line} is not valid UTF-8: convert the file to UTF-8") from exc
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def text_line_of(data: bytes, offset: int) -> int:
    """1-based line number of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def read_parallel(path: str | os.PathLike[str], tgt_path: str | os.PathLike[str] | None = None) -> list[Pair]:
    """The user's pairs: ``src<TAB>tgt`` lines of one file, or line ``i`` of ``path`` with line ``i``
    of ``tgt_path``. Every line must pair up: a line without exactly one tab, an empty side, or files
    of different lengths is a one-line DataError naming the first bad line. Group: the line number
    (each pair its own group)."""
    src_lines = _read_lines(Path(path))
    if tgt_path is None:
        pairs = []
        for n, line in enumerate(src_lines, 1):
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataError(f"{path} line {n} has {len(parts) - 1} tabs, not 1: write each pair as "
                                "source<TAB>target")  # fmt: skip
            src, tgt = parts[0].strip(), parts[1].strip()
            if not src or not tgt:
                side = "source" if not src else "target"
                raise DataError(f"{path} line {n} has an empty {side}: every line needs both texts")
            pairs.append(Pair(src, tgt, str(n)))
    else:
        tgt_lines = _read_lines(Path(tgt_path))
        if len(src_lines) != len(tgt_lines):
            n = min(len(src_lines), len(tgt_lines)) + 1
            short = tgt_path if len(tgt_lines) < len(src_lines) else path
            raise DataError(f"{path} has {len(src_lines)} lines and {tgt_path} {len(tgt_lines)}: line {n} has no "
                            f"partner in {short}")  # fmt: skip
        pairs = []
        for n, (src, tgt) in enumerate(zip(src_lines, tgt_lines), 1):
            if not src.strip() or not tgt.strip():
                which = path if not src.strip() else tgt_path
                raise DataError(f"line {n} of {which} is empty: the two files must pair up line by line")
            pairs.append(Pair(src.strip(), tgt.strip(), str(n)))
    if not pairs:
        raise DataError(f"{path} has no pairs: give at least one line")
    return pairs


# ------------------------------------------------------------------------------------------
# Freedict dictionaries (dictd format) for word-by-word baselines.

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_number(text: str) -> int:
    n = 0
    for ch in text:
        n = n * 64 + _B64.index(ch)
    return n


def _first_sense(entry: str) -> tuple[str, bool]:
    """(translation, plain) of one dictd entry: its first sense line after the headword, without
    numbering, ``<...>`` / ``[...]`` / ``(...)`` notes and ellipses, cut at its first ``,`` or ``;``.
    ``plain`` is False when the sense carries a domain label (``[adm.]``, ``[mus.]``...)."""
    lines = entry.split("\n")
    sense = next((line.strip() for line in lines[1:] if line.strip()), "")
    plain = not sense.startswith("[")
    sense = re.sub(r"^\d+\.\s*", "", sense)
    sense = re.sub(r"\s*(<[^>]*>|\([^)]*\)|\[[^\]]*\])", "", sense)
    sense = re.split(r"[,;]", sense)[0].replace("...", "").replace("…", "").strip()
    return sense, plain


def read_dictd(index: Path, dict_dz: Path) -> dict[str, str]:
    """headword (lower case) -> its first translation, from a freedict ``.index`` + ``.dict.dz``.

    The index lines are ``word<TAB>offset<TAB>length`` (base-64 numbers) into the uncompressed
    dictionary; a freedict entry is the headword line (with its pronunciation), then sense lines.
    A headword's translation is the first sense (:func:`_first_sense`) of its first entry without
    a domain label, else of its first entry (German ``Haus`` has an ``[adm.] establishment`` entry
    before ``house``). The ``00-database-*`` entries are metadata and skipped.
    """
    try:
        data = gzip.decompress(Path(dict_dz).read_bytes())
        lines = Path(index).read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the dictionary {index} ({exc}): reinstall its dict-freedict package") from exc
    plain: dict[str, str] = {}
    labelled: dict[str, str] = {}
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith(("00-database", "00database")):
            continue
        word = parts[0].strip().lower()
        if word in plain:
            continue
        start, length = _b64_number(parts[1]), _b64_number(parts[2])
        sense, is_plain = _first_sense(data[start : start + length].decode("utf-8", errors="replace"))
        if sense:
            (plain if is_plain else labelled).setdefault(word, sense)
    return {**labelled, **plain}


# ------------------------------------------------------------------------------------------
# The seq2seq batch collator.


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``[start, y_1, ..., y_{T-1}]``, -100 replaced by ``pad_id``.

    labels (B, T) -> (B, T). Position t of the decoder sees y_{<t} and is scored on y_t.
    """
    out = torch.full_like(labels, pad_id)
    out[:, 0] = start_id
    out[:, 1:] = labels[:, :-1]
    return out.masked_fill(out == IGNORE_INDEX, pad_id)


def encode_pairs(
    pairs: Sequence[Pair], encode_batch: Callable[[list[str]], list[list[int]]], prefix: str = ""
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of each pair: ``encode_batch`` (the tokenizer's, which appends </s>, e.g.
    :meth:`genlab.tokenizers.unigram.UnigramTokenizer.encode_batch`) over ``prefix + src`` and
    ``tgt``. ``prefix`` is T5's task prefix (``"translate English to French: "``)."""
    sources = encode_batch([prefix + p.src for p in pairs])
    targets = encode_batch([p.tgt for p in pairs])
    return list(zip(sources, targets))


def collate_seq2seq(
    examples: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    decoder_start_id: int,
    max_source_len: int | None = None,
    max_target_len: int | None = None,
    truncation: str = "error",
) -> dict[str, torch.Tensor]:
    """(input_ids, labels) token lists -> the padded tensors of one encoder-decoder batch.

    Returns ``input_ids`` (B, S), ``attention_mask`` (B, S) (1 = token), ``labels`` (B, T) with
    -100 at padding, ``decoder_input_ids`` (B, T) = labels shifted right behind
    ``decoder_start_id`` (:func:`shift_right`) and ``decoder_attention_mask`` (B, T). A sequence
    longer than its ``max_*_len`` is an error (``truncation="error"``) or cut (``"cut"``).
    """
    if not examples:
        raise DataError("an empty batch has nothing to collate: give at least one (input_ids, labels) pair")
    if truncation not in ("error", "cut"):
        raise DataError(f"truncation={truncation!r}: use 'error' or 'cut'")
    srcs, tgts = [], []
    for i, (src, tgt) in enumerate(examples):
        src, tgt = list(src), list(tgt)
        if not src or not tgt:
            raise DataError(f"example {i} has an empty {'input' if not src else 'target'}: drop it before batching")
        for seq, limit, what in ((src, max_source_len, "input"), (tgt, max_target_len, "target")):
            if limit is not None and len(seq) > limit and truncation == "error":
                raise DataError(f"example {i}'s {what} has {len(seq)} tokens, more than {limit}: "
                                "shorten it or collate with truncation='cut'")  # fmt: skip
        srcs.append(src[:max_source_len] if max_source_len else src)
        tgts.append(tgt[:max_target_len] if max_target_len else tgt)
    B, S, T = len(srcs), max(map(len, srcs)), max(map(len, tgts))
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, S), dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    decoder_attention_mask = torch.zeros((B, T), dtype=torch.long)
    for b, (src, tgt) in enumerate(zip(srcs, tgts)):
        input_ids[b, : len(src)] = torch.tensor(src)
        attention_mask[b, : len(src)] = 1
        labels[b, : len(tgt)] = torch.tensor(tgt)
        decoder_attention_mask[b, : len(tgt)] = 1
    return {
        "input_ids": input_ids,  # (B, S)
        "attention_mask": attention_mask,  # (B, S)
        "labels": labels,  # (B, T)
        "decoder_input_ids": shift_right(labels, decoder_start_id, pad_id),  # (B, T)
        "decoder_attention_mask": decoder_attention_mask,  # (B, T)
    }


__all__ = [
    "IGNORE_INDEX",
    "Pair",
    "ParallelSplit",
    "collate_seq2seq",
    "debian_description_pairs",
    "ding_pairs",
    "encode_pairs",
    "group_fraction",
    "help_paragraphs",
    "libreoffice_help_pairs",
    "manpage_pairs",
    "read_dictd",
    "read_pairs",
    "read_parallel",
    "roff_sections",
    "shift_right",
    "split_by_group",
    "write_pairs",
]
