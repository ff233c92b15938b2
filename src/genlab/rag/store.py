"""The index directory: SQLite for documents and chunks, FAISS for the dense side, bm25s for the lexical side.

    DIR/rag.sqlite   meta (embedding model, dim, tokenizer hash, chunking, generations),
                     documents (source, doc_id, file, content hash, mtime, generation),
                     chunks (chunk_id, document, section, position, text, tokens)
    DIR/dense.faiss  IndexIDMap(IndexFlatIP): unit embeddings, ids = chunk ids (inner product = cosine)
    DIR/bm25/        a bm25s index over the same chunk texts and the chunk ids it returns

Crash safety. SQLite is written in one transaction per batch of documents; each document row
carries the *generation* it was written in. The FAISS file is written to a temporary file and
renamed over the old one (``os.replace``); only then is ``meta.committed`` set to that
generation. So a document counts as ingested once its embeddings are in the saved FAISS file.
On open, :meth:`Store.reconcile` drops documents newer than ``committed`` (their chunks are not
in the saved file), removes from FAISS any id SQLite no longer has (a changed or deleted
document whose rows went before the crash), and rebuilds BM25 when its generation is stale.
Chunk ids are AUTOINCREMENT: an id is never reused, so a stale FAISS id cannot alias a new chunk.
BM25 is rebuilt from the SQLite chunk texts after every change (it takes seconds) into a fresh
folder that is swapped in by rename.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.core.errors import ConfigError, DataError
from genlab.rag.chunk import heading_line
from genlab.rag.types import Chunk

DB_FILE = "rag.sqlite"
FAISS_FILE = "dense.faiss"
BM25_DIR = "bm25"
FORMAT = "genlab-rag-1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL, doc_id TEXT NOT NULL, file TEXT NOT NULL, title TEXT NOT NULL,
    hash TEXT NOT NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, generation INTEGER NOT NULL,
    UNIQUE (source, doc_id));
CREATE INDEX IF NOT EXISTS documents_file ON documents (source, file);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id INTEGER PRIMARY KEY AUTOINCREMENT,
    document INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    section TEXT NOT NULL, position INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document);
"""

_CHUNK_COLUMNS = "c.chunk_id, d.doc_id, d.source, d.title, c.section, c.position, c.text"


@dataclass(frozen=True)
class DocRecord:
    """A stored document row (without its chunks)."""

    id: int
    source: str
    doc_id: str
    file: str
    hash: str
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class ModelInfo:
    """What the dense side was built with; an index only answers queries embedded the same way."""

    name: str  # the encoder's source ("all-MiniLM-L6-v2", a run directory)
    arg: str  # what to pass to load_encoder ("minilm", a path)
    dim: int
    tokenizer_sha256: str


def _faiss():
    try:
        import faiss
    except ModuleNotFoundError as e:  # pragma: no cover - the rag extra is installed with make setup
        raise ConfigError("genlab rag needs faiss-cpu and bm25s: pip install 'genlab[rag]'") from e
    return faiss


def _bm25s():
    try:
        import bm25s
    except ModuleNotFoundError as e:  # pragma: no cover
        raise ConfigError("genlab rag needs faiss-cpu and bm25s: pip install 'genlab[rag]'") from e
    return bm25s


def bm25_tokenize(texts: Sequence[str]):
    """bm25s' tokenizer as the index and the queries use it: lower case, English stop words removed."""
    return _bm25s().tokenize(list(texts), stopwords="en", show_progress=False)


def is_index(path: Path) -> bool:
    return (Path(path) / DB_FILE).is_file()


class Store:
    """An open index directory (see the module docstring). ``Store.create`` makes a new one,
    ``Store.open`` an existing one; both reconcile after a crash."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self.db = db
        self._dense = None
        self._bm25 = None
        self._bm25_ids: np.ndarray | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | os.PathLike, create: bool = False) -> Store:
        root = Path(root).expanduser()
        if not is_index(root):
            if not create:
                what = "does not exist" if not root.exists() else f"has no {DB_FILE}"
                raise DataError(f"{root} {what}: it is not a genlab rag index (make one with genlab rag ingest)")
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise DataError(
                    f"{root} exists and is not an empty folder or a genlab rag index: choose another --index"
                )
            root.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(root / DB_FILE, isolation_level=None)  # explicit transactions below
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise DataError(
                f"{root / DB_FILE} is not a readable SQLite database ({e}): remove the folder and ingest again"
            ) from e
        store = cls(root, db)
        fmt = store.get_meta("format")
        if fmt is None:
            store.set_meta({"format": FORMAT, "committed": "0", "bm25_generation": "-1"})
        elif fmt != FORMAT:
            raise DataError(
                f"{root} is a rag index of format {fmt}, this genlab reads {FORMAT}: ingest again into a new folder"
            )
        store.reconcile()
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    @property
    def committed(self) -> int:
        return int(self.get_meta("committed") or 0)

    def model(self) -> ModelInfo | None:
        raw = self.get_meta("model")
        return None if raw is None else ModelInfo(**json.loads(raw))

    def check_model(self, info: ModelInfo) -> None:
        """Record the embedding model of a new index, or refuse another than the one it was built with."""
        have = self.model()
        if have is None:
            self.set_meta({"model": json.dumps(info.__dict__)})
            return
        if (have.name, have.dim, have.tokenizer_sha256) != (info.name, info.dim, info.tokenizer_sha256):
            same_tok = have.tokenizer_sha256 == info.tokenizer_sha256
            raise ConfigError(
                f"{self.root} was built with embeddings of {have.name} (dim {have.dim}); this uses {info.name} "
                f"(dim {info.dim}{'' if same_tok else ', another tokenizer'}): use --embed-model {have.arg}, "
                "or ingest into a new --index"
            )

    @property
    def headings(self) -> bool:
        """Whether each chunk is indexed with its heading line (the default) or as its text alone."""
        return self.get_meta("headings") != "0"

    def check_headings(self, headings: bool) -> None:
        """Record the heading setting of a new index, or refuse the other one for an existing index."""
        if self.get_meta("headings") is None or self.count()[0] == 0:
            self.set_meta({"headings": "1" if headings else "0"})
        elif self.headings != headings:
            have = "with" if self.headings else "without"
            raise ConfigError(
                f"{self.root} indexes chunks {have} their heading lines: ingest "
                f"{'without --no-headings' if self.headings else 'with --no-headings'}, or into a new --index"
            )

    def indexed_text(self, title: str, section: str, text: str) -> str:
        return (heading_line(title, section) if self.headings else "") + text

    def transaction(self):
        return _Transaction(self.db)

    # ---------------------------------------------------------------- documents
    def documents(self, sources: Iterable[str] | None = None) -> dict[tuple[str, str], DocRecord]:
        rows = self.db.execute("SELECT id, source, doc_id, file, hash, mtime_ns, size FROM documents").fetchall()
        keep = None if sources is None else set(sources)
        return {(r[1], r[2]): DocRecord(*r) for r in rows if keep is None or r[1] in keep}

    def count(self) -> tuple[int, int]:
        """(documents, chunks)."""
        docs = self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return docs, chunks

    def chunk_ids_of(self, doc_ids: Sequence[int]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            q = f"SELECT chunk_id FROM chunks WHERE document IN ({','.join('?' * len(part))})"
            out += [r[0] for r in self.db.execute(q, part)]
        return out

    def delete_documents(self, doc_ids: Sequence[int]) -> list[int]:
        """Delete documents (and their chunks) inside the caller's transaction; their chunk ids."""
        ids = self.chunk_ids_of(doc_ids)
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            self.db.execute(f"DELETE FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
        return ids

    def insert_document(self, source: str, doc_id: str, file: str, title: str, hash_: str, mtime_ns: int,
                        size: int, generation: int, passages: Sequence) -> list[int]:  # fmt: skip
        """Insert a document and its passages (:class:`genlab.rag.chunk.Passage`) inside the caller's
        transaction; the new chunk ids in order."""
        cur = self.db.execute(
            "INSERT INTO documents (source, doc_id, file, title, hash, mtime_ns, size, generation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (source, doc_id, file, title, hash_, mtime_ns, size, generation),
        )
        doc = cur.lastrowid
        ids = []
        for p in passages:
            c = self.db.execute(
                "INSERT INTO chunks (document, section, position, text, tokens) VALUES (?, ?, ?, ?, ?)",
                (doc, p.section, p.position, p.text, p.tokens),
            )
            ids.append(c.lastrowid)
        return ids

    def touch_documents(self, updates: Sequence[tuple[int, int, int]]) -> None:
        """(document id, mtime_ns, size) for unchanged content whose file was touched."""
        with self.transaction():
            self.db.executemany("UPDATE documents SET mtime_ns = ?, size = ? WHERE id = ?",
                                [(m, s, i) for i, m, s in updates])  # fmt: skip

    # ------------------------------------------------------------------- chunks
    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        out: dict[int, Chunk] = {}
        ids = [int(i) for i in ids]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            q = (f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON c.document = d.id "
                 f"WHERE c.chunk_id IN ({','.join('?' * len(part))})")  # fmt: skip
            out.update({r[0]: Chunk(*r) for r in self.db.execute(q, part)})
        return out

    def all_chunks(self) -> list[Chunk]:
        q = f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON c.document = d.id ORDER BY c.chunk_id"
        return [Chunk(*r) for r in self.db.execute(q)]

    def filter_ids(self, doc: str | None = None, source: str | None = None) -> np.ndarray | None:
        """Chunk ids whose document matches the glob ``doc`` and whose source matches the glob ``source``
        (None: no filter)."""
        if doc is None and source is None:
            return None
        rows = self.db.execute(
            "SELECT c.chunk_id, d.doc_id, d.source FROM chunks c JOIN documents d ON c.document = d.id"
        )
        keep = [
            cid for cid, d, s in rows
            if (doc is None or fnmatch.fnmatchcase(d, doc)) and (source is None or fnmatch.fnmatchcase(s, source))
        ]  # fmt: skip
        return np.asarray(keep, dtype=np.int64)

    # -------------------------------------------------------------------- dense
    def dense(self):
        """The FAISS index (IndexIDMap over IndexFlatIP), loaded once."""
        if self._dense is None:
            faiss = _faiss()
            path = self.root / FAISS_FILE
            if path.is_file():
                try:
                    self._dense = faiss.read_index(str(path))
                except RuntimeError as e:
                    raise DataError(
                        f"{path} is not a readable FAISS index ({e}): remove {self.root} and ingest again"
                    ) from e
            else:
                info = self.model()
                self._dense = None if info is None else faiss.IndexIDMap(faiss.IndexFlatIP(info.dim))
        return self._dense

    def dense_ids(self) -> np.ndarray:
        index = self.dense()
        return np.zeros(0, np.int64) if index is None else _faiss().vector_to_array(index.id_map).astype(np.int64)

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        index = self.dense()
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove_vectors(self, ids: Sequence[int]) -> None:
        if len(ids) and self.dense() is not None:
            self.dense().remove_ids(np.asarray(ids, dtype=np.int64))

    def commit(self, generation: int) -> None:
        """Write FAISS atomically, then mark ``generation`` as committed (see the module docstring)."""
        index = self.dense()
        if index is not None:
            path = self.root / FAISS_FILE
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            try:
                _faiss().write_index(index, str(tmp))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        self.set_meta({"committed": str(generation)})

    # --------------------------------------------------------------------- bm25
    def rebuild_bm25(self) -> None:
        """Index every chunk's text (with its heading line) with bm25s; swap the folder in by rename."""
        bm25s = _bm25s()
        rows = self.db.execute(
            "SELECT c.chunk_id, d.title, c.section, c.text FROM chunks c JOIN documents d ON c.document = d.id "
            "ORDER BY c.chunk_id"
        ).fetchall()
        final = self.root / BM25_DIR
        tmp = self.root / f".{BM25_DIR}.tmp{os.getpid()}"
        old = self.root / f".{BM25_DIR}.old{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        retriever = None
        if rows:
            retriever = bm25s.BM25()
            retriever.index(bm25_tokenize([self.indexed_text(*r[1:]) for r in rows]), show_progress=False)
            retriever.save(str(tmp))
        else:
            tmp.mkdir()
        np.save(tmp / "chunk_ids.npy", ids)
        generation = self.get_meta("committed")
        (tmp / "generation").write_text(generation, encoding="utf-8")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        self.set_meta({"bm25_generation": generation})
        self._bm25, self._bm25_ids = retriever, ids

    def bm25(self):
        """(bm25s retriever or None when empty, chunk ids of its rows)."""
        if self._bm25_ids is None:
            folder = self.root / BM25_DIR
            gen = (folder / "generation").read_text(encoding="utf-8") if (folder / "generation").is_file() else None
            if gen != self.get_meta("committed"):
                self.rebuild_bm25()
            else:
                self._bm25_ids = np.load(folder / "chunk_ids.npy")
                self._bm25 = _bm25s().BM25.load(str(folder)) if len(self._bm25_ids) else None
        return self._bm25, self._bm25_ids

    # ---------------------------------------------------------------- reconcile
    def reconcile(self) -> dict[str, int]:
        """Bring SQLite, FAISS and BM25 back in step after a crash (module docstring); what was dropped."""
        committed = self.committed
        stale = [r[0] for r in self.db.execute("SELECT id FROM documents WHERE generation > ?", (committed,))]
        with self.transaction():
            self.delete_documents(stale)
        sql_ids = np.asarray([r[0] for r in self.db.execute("SELECT chunk_id FROM chunks")], dtype=np.int64)
        faiss_ids = self.dense_ids()
        extra = np.setdiff1d(faiss_ids, sql_ids)
        missing = np.setdiff1d(sql_ids, faiss_ids)
        if len(missing):  # rows without vectors: their documents are dropped and will be ingested again
            docs = sorted({r[0] for i in range(0, len(missing), 500) for r in self.db.execute(
                f"SELECT document FROM chunks WHERE chunk_id IN ({','.join('?' * len(missing[i:i + 500]))})",
                missing[i : i + 500].tolist())})  # fmt: skip
            with self.transaction():
                extra = np.union1d(extra, self.delete_documents(docs))
            stale += docs
        if len(extra):
            self.remove_vectors(extra)
        if len(extra) or stale:
            self.commit(committed)
        folder = self.root / BM25_DIR
        stale_bm25 = self.get_meta("bm25_generation") != str(committed) or not (folder / "generation").is_file()
        if stale_bm25 and self.model() is not None:
            self.rebuild_bm25()
        return {"documents_dropped": len(stale), "vectors_dropped": int(len(extra))}


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self.db.in_transaction  # an inner block joins the outer transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb) -> None:
        if not self.outer:
            return
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
