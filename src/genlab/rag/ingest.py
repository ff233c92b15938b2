"""Ingest: find the files of each source, read them into documents, chunk, embed and store.

Readers (each gives :class:`~genlab.rag.chunk.Document` records; the heading path of every
paragraph is kept):

- plain text (``.txt`` and any other UTF-8 file): paragraphs at blank lines, the first line as title;
- Markdown (``.md``): ATX (``#``) and setext headings, fenced code kept as an indented block;
- reST (``.rst``, and ``.rst.txt``, the form of the Python documentation in Debian ``python3-doc``):
  headings by their under/overline adornment (levels in order of first use, as docutils does),
  directives without content dropped, roles and links reduced to their words;
- HTML (``.html``, ``.htm``): text by the stdlib ``html.parser``, ``<h1>``-``<h6>`` as headings,
  scripts and styles dropped;
- man pages (``name.N`` or ``name.N.gz`` with roff inside): sections by ``.SH``, through the roff
  converter of :func:`genlab.data.parallel.roff_sections`;
- dictd dictionaries (``name.index`` beside ``name.dict.dz``, e.g. FOLDOC and Jargon in
  ``/usr/share/dictd``): one document per headword, ``doc_id`` ``name/headword``.

Paths. Every file is taken under the root of the source it was found in. A symbolic link whose
target resolves outside that root (a file or a folder) is **skipped with a note**, never read;
hidden files and folders (``.git``) are skipped. A source that does not exist, a source file that
is not text (a NUL byte in its first 8 KiB, or not UTF-8) and a source with no readable document
are one-line errors and leave the index as it was; a binary file found *inside* a folder is
skipped with a note (folders hold images).

Incremental. A document's hash is the SHA-256 of its content and of the chunking settings. A
file whose size and mtime are those stored is not read again; a changed one is re-read, and
only the documents whose hash changed are re-chunked and re-embedded; a document of a given
source that is no longer found is deleted from SQLite, FAISS and BM25 (documents of sources not
named this time are kept). See :mod:`genlab.rag.store` for how a kill or Ctrl-C leaves the index.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from genlab.core.errors import DataError
from genlab.data.chat import read_dictd_entries, rst_plain
from genlab.data.parallel import roff_sections
from genlab.rag.chunk import Document, Section, chunk_document, wordpiece_counter
from genlab.rag.embed import embed_passages
from genlab.rag.store import ModelInfo, Store

READER_VERSION = "1"  # part of every document hash: a reader change re-ingests
SNIFF_BYTES = 8192


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MAN_NAME = re.compile(r"\.[1-9][a-z]*(\.gz)?$")
_BINARY_SUFFIXES = _words(
    ".png .jpg .jpeg .gif .ico .pdf .zip .whl .so .o .a .pyc .woff .woff2 .ttf .otf .svgz .mo .db "
    ".sqlite .npy .pt .bin .safetensors .faiss .xz .bz2 .tar .tgz"
)


class NotText(DataError):
    """A file that is not UTF-8 text."""


# ------------------------------------------------------------------------------ readers


def sniff_text(data: bytes, name: str) -> str:
    """``data`` decoded as UTF-8, or :class:`NotText` (a NUL byte early on, or invalid UTF-8)."""
    if b"\x00" in data[:SNIFF_BYTES]:
        raise NotText(
            f"{name} is not a text file (it holds NUL bytes): give text, Markdown, reST, HTML, man or dictd files"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotText(f"{name} is not UTF-8 text (byte {e.start}): convert it (iconv -t utf-8) or leave it out") from e


def _paragraphs(lines: list[str]) -> list[str]:
    out, cur = [], []
    for ln in lines:
        if ln.strip():
            cur.append(ln.rstrip())
        elif cur:
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


def _sections_from(blocks: list[tuple[int, str] | str]) -> tuple[str, list[Section]]:
    """(level, heading) markers and paragraph strings -> (title, sections with heading paths)."""
    stack: list[tuple[int, str]] = []
    sections = [Section("")]
    title = ""
    for b in blocks:
        if isinstance(b, tuple):
            level, head = b
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, head))
            title = title or head
            sections.append(Section(" > ".join(h for _, h in stack)))
        elif b.strip():
            sections[-1].paragraphs.append(b)
    return title, [s for s in sections if s.paragraphs]


def read_plain(text: str, doc_id: str) -> Document:
    paras = _paragraphs(text.splitlines())
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return Document(doc_id, first[:120] or doc_id, [Section("", paras)] if paras else [])


_MD_HEAD = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPH = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")


def _md_inline(text: str) -> str:
    return _MD_EMPH.sub(r"\2", _MD_LINK.sub(r"\1", text))


def read_markdown(text: str, doc_id: str) -> Document:
    blocks: list[tuple[int, str] | str] = []
    lines = text.splitlines()
    cur: list[str] = []

    def flush() -> None:
        if cur:
            blocks.append(_md_inline("\n".join(cur)))
            cur.clear()

    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.lstrip().startswith(("```", "~~~")):
            flush()
            fence = ln.lstrip()[:3]
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(fence):
                j += 1
            code = "\n".join("    " + c for c in lines[i + 1 : j] if c.strip())
            if code:
                blocks.append(code)
            i = j + 1
            continue
        m = _MD_HEAD.match(ln)
        if m:
            flush()
            blocks.append((len(m.group(1)), _md_inline(m.group(2))))
        elif cur and len(cur) == 1 and re.fullmatch(r"=+|-+", ln.strip()) and len(ln.strip()) >= 2:
            head = cur.pop()
            blocks.append((1 if ln.strip()[0] == "=" else 2, _md_inline(head.strip())))
        elif not ln.strip():
            flush()
        else:
            cur.append(ln.rstrip())
        i += 1
    flush()
    title, sections = _sections_from(blocks)
    return Document(doc_id, title or Path(doc_id).stem, sections)


_ADORN = re.compile(r"([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_RST_DROP = _words(
    "toctree index highlight sectionauthor moduleauthor contents only include raw testsetup "
    "testcleanup literalinclude image figure tabularcolumns"
)
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")


def read_rst(text: str, doc_id: str) -> Document:
    """reST -> document (see the module docstring). Heading levels follow docutils: each new
    adornment style (character, with or without overline) gets the next level."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    blocks: list[tuple[int, str] | str] = []
    cur: list[str] = []

    def flush() -> None:
        if cur:
            para = "\n".join(cur)
            blocks.append(para if para[:1] in " \t" else rst_plain(para))
            cur.clear()

    i = 0
    n = len(lines)
    while i < n:
        ln = lines[i]
        over = _ADORN.match(ln) and i + 2 < n and lines[i + 1].strip() and _ADORN.match(lines[i + 2] or "")
        if over and lines[i + 2].strip()[0] == ln.strip()[0]:
            flush()
            style = (ln.strip()[0], True)
            head, i = lines[i + 1].strip(), i + 3
        elif (
            ln.strip()
            and not ln[:1].isspace()
            and i + 1 < n
            and _ADORN.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(ln.rstrip()) - 1
            and not cur
        ):
            flush()
            style = (lines[i + 1].strip()[0], False)
            head, i = ln.strip(), i + 2
        else:
            m = _DIRECTIVE.match(ln)
            if m or ln.startswith(".. "):
                flush()
                name, arg = (m.group(1), m.group(2)) if m else ("", "")
                j = i + 1
                while j < n and (not lines[j].strip() or lines[j][:1].isspace()):
                    j += 1
                body = lines[i + 1 : j]
                if name and name not in _RST_DROP:
                    code = name in ("code-block", "code", "sourcecode", "doctest", "productionlist")
                    if arg and not code:
                        blocks.append(rst_plain(arg))
                    content = [b for b in body if not re.match(r"\s+:[\w-]+:", b)]
                    dedented = textwrap.dedent("\n".join(content)).splitlines()
                    for para in _paragraphs(dedented):
                        blocks.append(textwrap.indent(para, "    ") if code else rst_plain(para))
                i = j
                continue
            if not ln.strip():
                flush()
            else:
                cur.append(ln.rstrip())
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        blocks.append((styles.index(style) + 1, rst_plain(head)))
    flush()
    title, sections = _sections_from(blocks)
    return Document(doc_id, title or Path(doc_id).name.split(".")[0], sections)


class _HTMLText(HTMLParser):
    """Text blocks and (level, heading) markers of an HTML page. Scripts, styles, ``<nav>`` and
    elements marked as navigation (``role="navigation"``, Sphinx's sidebar and related bars) are
    skipped with everything inside them; a heading's permalink mark (Sphinx's ``¶``) is dropped."""

    _BLOCK = _words(
        "p div li ul ol pre br tr td th table section article blockquote dd dt dl header main aside "
        "figure figcaption form hr"
    )
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "nav", "footer"})
    _SKIP_CLASS = re.compile(r"\b(sphinxsidebar|related|footer|headerlink|navigation)\b")
    _VOID = _words("area base br col embed hr img input link meta source track wbr")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[int, str] | str] = []
        self.title = ""
        self._text: list[str] = []
        self._depth = 0
        self._skip_at: int | None = None  # depth of the skipped element we are inside
        self._pre = 0
        self._head: int | None = None
        self._in_title = False

    def _flush(self) -> None:
        raw = "".join(self._text)
        self._text = []
        if self._head is not None:
            head = " ".join(raw.split()).rstrip("¶").strip()
            if head:
                self.blocks.append((self._head, head))
        elif self._pre:
            if raw.strip():
                self.blocks.append(textwrap.indent(textwrap.dedent(raw.strip("\n")), "    "))
        else:
            text = " ".join(raw.split())
            if text:
                self.blocks.append(text)

    def handle_starttag(self, tag: str, attrs) -> None:
        void = tag in self._VOID
        if not void:
            self._depth += 1
        if self._skip_at is not None:
            return
        a = dict(attrs)
        if tag in self._SKIP or a.get("role") == "navigation" or self._SKIP_CLASS.search(a.get("class") or ""):
            if not void:
                self._skip_at = self._depth
            return
        if tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._head = int(tag[1])
        elif tag in self._BLOCK:
            self._flush()
            self._pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag in self._VOID:
            return
        depth = self._depth
        self._depth = max(0, self._depth - 1)
        if self._skip_at is not None:
            if depth <= self._skip_at:
                self._skip_at = None
            return
        if tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag) and self._head is not None:
            self._flush()
            self._head = None
        elif tag in self._BLOCK:
            self._flush()
            self._pre -= tag == "pre" and self._pre > 0

    def handle_data(self, data: str) -> None:
        if self._skip_at is not None:
            return
        if self._in_title:
            self.title += data
        else:
            self._text.append(data)


def read_html(text: str, doc_id: str) -> Document:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser._flush()
    first, sections = _sections_from(parser.blocks)
    title = " ".join(parser.title.split()) or first or Path(doc_id).stem
    return Document(doc_id, title, sections)


def is_roff(text: str) -> bool:
    head = text[:4000]
    return bool(re.search(r"^\.(TH|SH|Dd)\b", head, re.M))


def read_man(text: str, doc_id: str) -> Document:
    sections = roff_sections(text)
    name = Path(doc_id).name.removesuffix(".gz")
    stem, _, section = name.rpartition(".")
    title = f"{stem}({section})" if stem else name
    summary = sections.get("NAME", "").strip()
    title = summary.split("\n")[0] if summary else title
    return Document(doc_id, title, [Section(head, text.split("\n")) for head, text in sections.items() if text.strip()])


def read_dictd(index: Path, name: str) -> list[tuple[Document, str]]:
    """(document, content hash) per headword of a dictd dictionary; repeated headwords get ``#2``, ``#3``."""
    seen: dict[str, int] = {}
    out = []
    for word, body in read_dictd_entries(index):
        seen[word] = seen.get(word, 0) + 1
        doc_id = f"{name}/{word}" + (f"#{seen[word]}" if seen[word] > 1 else "")
        paras = [textwrap.dedent(p).strip() for p in _paragraphs(body.splitlines())]
        paras = [" ".join(p.split()) for p in paras if p]
        if paras and paras[0].strip().lower() == word.lower():
            paras = paras[1:]  # the entry repeats its headword on the first line
        if paras:
            out.append((Document(doc_id, word, [Section(word, paras)]), _hash(body.encode("utf-8"))))
    return out


READERS: dict[str, Callable[[str, str], Document]] = {
    "text": read_plain,
    "markdown": read_markdown,
    "rst": read_rst,
    "html": read_html,
    "man": read_man,
}


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kind_of(path: Path) -> str | None:
    """The reader for a file name (None: not a document; content decides between man and text)."""
    name = path.name.lower()
    if name.endswith(".dict.dz") or path.suffix.lower() in _BINARY_SUFFIXES:
        return None
    if name.endswith(".index"):
        return "dictd" if path.with_suffix(".dict.dz").is_file() else "text"
    if name.endswith((".rst", ".rst.txt")):
        return "rst"
    if name.endswith((".md", ".markdown")):
        return "markdown"
    if name.endswith((".html", ".htm")):
        return "html"
    if _MAN_NAME.search(name):
        return "man"
    if name.endswith(".gz"):
        return None
    return "text"


# -------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class SourceFile:
    source: str  # the source root (resolved), stored with each document
    rel: str  # the path under the root, as found (POSIX); a document id
    path: Path
    kind: str


@dataclass
class Found:
    files: list[SourceFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def find_files(sources: Sequence[str | os.PathLike]) -> Found:
    """Every document file of ``sources`` (files or folders), in a stable order; symlinks that
    leave their source are skipped with a note. Raises DataError for a missing source."""
    found = Found()
    if not sources:
        raise DataError("no source given: name files or folders to ingest")
    for s in sources:
        given = Path(s).expanduser()
        if not given.exists():
            why = "is a broken symbolic link" if given.is_symlink() else "does not exist"
            raise DataError(f"source {s} {why}: give existing files or folders")
        real = Path(os.path.realpath(given))
        if real.is_file():
            kind = kind_of(real)
            if kind is None:
                raise NotText(f"{s} is not a document genlab rag reads (text, Markdown, reST, HTML, man, dictd .index)")
            found.files.append(SourceFile(str(real.parent), real.name, real, kind))
            continue
        root = str(real)
        seen_dirs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real_dir = os.path.realpath(dirpath)
            rel_dir = os.path.relpath(dirpath, root)
            if not _inside(real_dir, root):
                found.notes.append(f"skipped {rel_dir}: a link to {real_dir}, outside the source {root}")
                dirnames[:] = []
                continue
            if real_dir in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(real_dir)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                target = os.path.realpath(full)
                rel = Path(os.path.relpath(full, root)).as_posix()
                if not _inside(target, root):
                    found.notes.append(f"skipped {rel}: a link to {target}, outside the source {root}")
                    continue
                if not os.path.isfile(target):
                    continue
                kind = kind_of(Path(full))
                if kind is not None:
                    found.files.append(SourceFile(root, rel, Path(full), kind))
    return found


@dataclass
class Parsed:
    file: SourceFile
    mtime_ns: int
    size: int
    docs: list[tuple[Document, str]]  # (document, hash)
    note: str | None = None  # why a file gave no document


def read_file(f: SourceFile, settings: str, strict: bool) -> Parsed:
    """Read one file into documents with their hashes (``settings`` is hashed in too). A non-text
    file raises NotText (``strict``: it was named as a source) or gives no document."""
    st = f.path.stat()
    if f.kind == "dictd":
        docs = read_dictd(f.path, f.path.name.removesuffix(".index"))
        return Parsed(f, st.st_mtime_ns, st.st_size, [(d, _hash(f"{settings}|{h}".encode())) for d, h in docs])
    data = f.path.read_bytes()
    if f.kind == "man" and f.path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise NotText(f"{f.path} is not a readable gzip man page ({e})") from e
    try:
        text = sniff_text(data, str(f.path))
    except NotText as e:
        if strict:
            raise
        return Parsed(
            f, st.st_mtime_ns, st.st_size, [], f"skipped {f.rel}: {str(e).split(': ')[0].split(' is ', 1)[-1]}"
        )
    kind = f.kind
    if kind == "man" and not is_roff(text):
        kind = "text"
    if kind == "man" and re.fullmatch(r"\.so\s+\S+\s*", text.strip()):
        return Parsed(f, st.st_mtime_ns, st.st_size, [])  # a man page that only points at another
    doc = READERS[kind](text, f.rel)
    if not doc.sections:
        return Parsed(f, st.st_mtime_ns, st.st_size, [])
    return Parsed(f, st.st_mtime_ns, st.st_size, [(doc, _hash(f"{settings}|{READER_VERSION}|".encode() + data))])


# ------------------------------------------------------------------------------- ingest


@dataclass
class IngestReport:
    index: Path
    files: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0  # chunks embedded this run
    tokens: int = 0  # tokens embedded this run
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    total_documents: int = 0
    total_chunks: int = 0

    def summary(self) -> str:
        rate = f", {self.tokens / self.seconds:,.0f} tokens/s" if self.seconds > 0 and self.tokens else ""
        head = "interrupted: kept" if self.interrupted else "ingested into"
        return (
            f"{head} {self.index}: {self.added} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.removed} removed documents; {self.chunks:,} chunks ({self.tokens:,} tokens) embedded in "
            f"{self.seconds:.1f} s{rate}; the index holds {self.total_documents:,} documents, "
            f"{self.total_chunks:,} chunks"
        )


def model_info(encoder, arg: str) -> ModelInfo:
    tok = encoder.tokenizer.hf.to_str().encode("utf-8")
    return ModelInfo(encoder.source, arg, int(encoder.dim), _hash(tok))


def _batches(items: list[Parsed], chunk_target: int) -> Iterator[list[tuple[Parsed, Document, str]]]:
    batch: list[tuple[Parsed, Document, str]] = []
    size = 0
    for p in items:
        for d, h in p.docs:
            batch.append((p, d, h))
            size += max(1, len(d.text()) // 800)  # about one chunk per 800 characters
            if size >= chunk_target:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def ingest(
    store: Store,
    encoder,
    sources: Sequence[str | os.PathLike],
    model_arg: str = "minilm",
    max_tokens: int = 200,
    overlap: int = 32,
    batch_size: int = 32,
    embed_group: int = 512,
    save_every_s: float = 30.0,
    progress: bool = True,
    embed: Callable | None = None,
    headings: bool = True,
) -> IngestReport:
    """Bring ``store`` up to date with ``sources`` (see the module docstring).

    Documents are chunked and embedded about ``embed_group`` chunks at a time (sorted by length
    inside the group, ``batch_size`` per forward pass, padding packed out: :mod:`genlab.rag.embed`);
    each group is one SQLite transaction, and FAISS is saved (and the generation committed) every
    ``save_every_s`` seconds and at the end.
    A KeyboardInterrupt keeps every group written so far and re-raises after saving.
    ``embed`` (texts -> unit vectors) replaces the encoder's embedding pass (tests count calls).
    ``headings``: index each chunk with its heading line (default) or as its text alone; an
    index keeps the setting it was made with.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    report = IngestReport(store.root)
    found = find_files(sources)
    report.notes += found.notes
    report.files = len(found.files)
    roots = sorted(
        {f.source for f in found.files}
        | {str(Path(os.path.realpath(Path(s).expanduser()))) for s in sources if Path(s).expanduser().is_dir()}
    )
    if not found.files:
        raise DataError(
            f"no documents found in {', '.join(map(str, sources))}: it holds no text, Markdown, reST, "
            "HTML, man or dictd files"
        )
    settings = f"{encoder.source}|{max_tokens}|{overlap}|{int(headings)}"
    stored = store.documents(roots)
    by_file: dict[tuple[str, str], list] = {}
    for rec in stored.values():
        by_file.setdefault((rec.source, rec.file), []).append(rec)

    strict = {str(Path(os.path.realpath(Path(s).expanduser()))) for s in sources}
    todo: list[Parsed] = []
    seen: set[tuple[str, str]] = set()
    touched: list[tuple[int, int, int]] = []
    for f in found.files:
        st = f.path.stat()
        recs = by_file.get((f.source, f.rel), [])
        if recs and all(r.mtime_ns == st.st_mtime_ns and r.size == st.st_size for r in recs):
            seen.update((r.source, r.doc_id) for r in recs)  # same size and mtime: not read again
            report.unchanged += len(recs)
            continue
        parsed = read_file(f, settings, strict=str(f.path) in strict)
        if parsed.note:
            report.notes.append(parsed.note)
        keep = []
        for d, h in parsed.docs:
            key = (f.source, d.doc_id)
            if key in seen:
                continue  # two files of one source that give the same document id: the first wins
            seen.add(key)
            old = stored.get(key)
            if old is not None and old.hash == h:
                report.unchanged += 1
                if (old.mtime_ns, old.size) != (parsed.mtime_ns, parsed.size):
                    touched.append((old.id, parsed.mtime_ns, parsed.size))
            else:
                keep.append((d, h))
        parsed.docs = keep
        if keep:
            todo.append(parsed)
    if not seen:
        raise DataError(f"no readable document in {', '.join(map(str, sources))}: the files hold no text")
    store.check_model(model_info(encoder, model_arg))  # after every read: bad input writes nothing
    store.check_headings(headings)
    if touched:
        store.touch_documents(touched)

    generation = store.committed + 1
    gone = [rec.id for key, rec in stored.items() if key not in seen]
    if gone:
        with store.transaction():
            store.remove_vectors(store.delete_documents(gone))
        report.removed = len(gone)
        store.commit(generation)
        generation += 1

    count = wordpiece_counter(encoder.tokenizer)
    limit = encoder.max_length

    def embed_fn(texts: list[str]) -> np.ndarray:
        if embed is not None:
            return embed(texts)
        return embed_passages(encoder, texts, batch_size, limit)

    n_docs = sum(len(p.docs) for p in todo)
    last_save = time.perf_counter()
    dirty = False
    bar = tqdm(total=n_docs, unit="doc", disable=not progress or not n_docs, file=sys.stderr, desc="ingest")
    try:
        for batch in _batches(todo, embed_group):
            passages = [chunk_document(d, count, max_tokens, overlap, headings) for _, d, _ in batch]
            texts = [p.indexed_text(d.title, headings) for (_, d, _), ps in zip(batch, passages) for p in ps]
            vectors = embed_fn(texts) if texts else np.zeros((0, store.model().dim), np.float32)
            olds = [stored[(p.file.source, d.doc_id)].id for p, d, _ in batch if (p.file.source, d.doc_id) in stored]
            with store.transaction():
                old_ids = store.delete_documents(olds)
                new_ids: list[int] = []
                for (p, d, h), ps in zip(batch, passages):
                    new_ids += store.insert_document(
                        p.file.source, d.doc_id, p.file.rel, d.title, h, p.mtime_ns, p.size, generation, ps
                    )
                store.remove_vectors(old_ids)
                store.add_vectors(new_ids, vectors)
            report.changed += len(olds)  # counted once the group's transaction is in
            report.added += len(batch) - len(olds)
            report.tokens += sum(x.tokens for ps in passages for x in ps)
            for p, d, _ in batch:
                stored.pop((p.file.source, d.doc_id), None)
            report.chunks += len(new_ids)
            dirty = True
            bar.update(len(batch))
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{report.tokens / max(elapsed, 1e-9):,.0f} tok/s")
            if time.perf_counter() - last_save >= save_every_s:
                store.commit(generation)
                generation += 1
                last_save, dirty = time.perf_counter(), False
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        if dirty:
            store.commit(generation)
        if report.interrupted:
            store.reconcile()  # a group cut between its FAISS update and its SQLite commit
        if dirty or gone or store.get_meta("bm25_generation") != str(store.committed):
            store.rebuild_bm25()
    report.seconds = time.perf_counter() - start
    report.total_documents, report.total_chunks = store.count()
    if report.interrupted:
        raise IngestInterrupted(report)
    return report


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during ingest, after the groups written so far were saved; ``report`` says how far it got."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(report.summary())
        self.report = report
