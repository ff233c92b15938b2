"""The store: SQLite, FAISS and BM25 stay in step through a SIGKILL, a Ctrl-C and a half-written batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_ingest import CountingEmbed, tiny_encoder, write

from genlab.core.errors import DataError
from genlab.rag.chunk import Passage
from genlab.rag.ingest import IngestInterrupted, ingest
from genlab.rag.store import DB_FILE, Store

SRC = Path(__file__).resolve().parents[2] / "src"


def many_docs(root: Path, n: int = 40) -> Path:
    for i in range(n):
        write(
            root / f"doc{i:03d}.txt", f"Document {i}.\n\nIt talks about topic{i} and nothing else. Word{i} word{i}.\n"
        )
    return root


def assert_consistent(store: Store) -> set[int]:
    """Every SQLite chunk has its vector and its BM25 row, and nothing else is there."""
    sql = {c.chunk_id for c in store.all_chunks()}
    assert set(store.dense_ids().tolist()) == sql
    _, bm25_ids = store.bm25()
    assert set(bm25_ids.tolist()) == sql
    docs = store.db.execute("SELECT COUNT(*) FROM documents WHERE generation > ?", (store.committed,)).fetchone()[0]
    assert docs == 0
    return sql


def test_reconcile_drops_uncommitted_documents_and_stale_vectors(tmp_path):
    encoder = tiny_encoder()
    src = many_docs(tmp_path / "src", 3)
    with Store.open(tmp_path / "idx", create=True) as store:
        ingest(store, encoder, [src], model_arg="tiny", progress=False, embed=CountingEmbed())
        kept = assert_consistent(store)
        # a crash after a batch's SQLite commit and before its FAISS save: rows newer than `committed`
        with store.transaction():
            store.insert_document("x", "ghost.txt", "ghost.txt", "Ghost", "h", 0, 0, store.committed + 1,
                                  [Passage("", 0, "boo", 1)])  # fmt: skip
        # and a vector whose rows went (a document deleted before the crash)
        store.add_vectors([10_000], np.ones((1, 32), np.float32) / np.sqrt(32))
        store.commit(store.committed)
    with Store.open(tmp_path / "idx") as store:
        assert assert_consistent(store) == kept
        assert "ghost.txt" not in {c.doc_id for c in store.all_chunks()}


def test_a_sigkill_mid_ingest_leaves_an_index_that_reopens_and_completes(tmp_path):
    src = many_docs(tmp_path / "src", 16)
    index = tmp_path / "idx"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ingest import CountingEmbed, tiny_encoder
        from genlab.rag.ingest import ingest
        from genlab.rag.store import Store
        inner = CountingEmbed()
        def slow(texts):
            print("embedding", flush=True)
            time.sleep(0.05)
            return inner(texts)
        store = Store.open({str(index)!r}, create=True)
        ingest(store, tiny_encoder(), [{str(src)!r}], model_arg="tiny", progress=False, embed=slow,
               embed_group=2, save_every_s=0.0)
        print("done", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)  # fmt: skip
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("embedding")
        if seen == 4:  # some groups committed, one in flight
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()

    with Store.open(index) as store:
        partial = assert_consistent(store)
        n_docs, _ = store.count()
        assert 0 < n_docs < 16
        from genlab.rag.retrieve import Retriever

        hits = Retriever(store, tiny_encoder(), store.model()).search("topic3 word3", "bm25", 3)
        assert all(h.chunk.chunk_id in partial for h in hits)
        embed = CountingEmbed()
        report = ingest(store, tiny_encoder(), [src], model_arg="tiny", progress=False, embed=embed)
        assert report.unchanged == n_docs and report.added == 16 - n_docs  # only the rest is embedded
        assert store.count()[0] == 16
        assert_consistent(store)


def test_ctrl_c_keeps_what_was_written_and_a_rerun_finishes(tmp_path):
    src = many_docs(tmp_path / "src", 12)
    inner = CountingEmbed()
    calls = []

    def interrupted(texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return inner(texts)

    with Store.open(tmp_path / "idx", create=True) as store:
        with pytest.raises(IngestInterrupted) as info:
            ingest(store, tiny_encoder(), [src], model_arg="tiny", progress=False, embed=interrupted, embed_group=2)
        assert info.value.report.interrupted and info.value.report.added == store.count()[0] > 0
        assert_consistent(store)
    with Store.open(tmp_path / "idx") as store:
        assert_consistent(store)
        ingest(store, tiny_encoder(), [src], model_arg="tiny", progress=False, embed=CountingEmbed())
        assert store.count()[0] == 12


def test_not_an_index_is_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Store.open(tmp_path / "nothing")
    write(tmp_path / "busy" / "file.txt", "x")
    with pytest.raises(DataError, match="not an empty folder"):
        Store.open(tmp_path / "busy", create=True)
    write(tmp_path / "bad" / DB_FILE, b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a readable SQLite database"):
        Store.open(tmp_path / "bad")
