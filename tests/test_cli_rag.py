"""genlab rag ingest | query | eval | questions on the command line; one-line errors, index unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_cli import genlab, one_line_error

from genlab.core.config import save_yaml, to_dict
from genlab.core.registry import preset
from genlab.data.sources import PYTHON_DOC_SOURCES
from genlab.models.bert import Bert
from genlab.runs.encoders import wordpiece_tokenizer
from genlab.training.checkpoint import save_checkpoint

HAS_PYDOC = (PYTHON_DOC_SOURCES / "faq" / "general.rst.txt").is_file()


def bert_run(path: Path, seed: int = 0) -> Path:
    """An untrained bert-micro run with MiniLM's WordPiece vocabulary and a 256-token context."""
    tok = wordpiece_tokenizer("minilm")
    torch.manual_seed(seed)
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, block_size=256)
    path.mkdir(parents=True)
    tok.save(path)
    save_yaml({"task": "mlm", "model": {"family": "bert", **to_dict(cfg)}}, path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": Bert(cfg)}, {}, ("last", "best"))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return bert_run(root / "a", 0), bert_run(root / "b", 1)


@pytest.fixture
def kb(tmp_path) -> Path:
    root = tmp_path / "kb"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "install.md").write_text(
        "# Install\n\nRun the installer. It copies the files.\n\n## Upgrade\n\nUpgrade with the same installer.\n"
    )
    (root / "notes.txt").write_text("Release notes\n\nVersion two fixes the printer driver.\n")
    return root


def fingerprint(index: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(index.glob("*")) if p.is_file()
            and not p.name.endswith(("-wal", "-shm"))}  # fmt: skip


def ingested(capsys, kb: Path, run: Path, index: Path) -> Path:
    code, out, err = genlab("rag", "ingest", kb, "--index", index, "--embed-model", run, "--no-progress", capsys=capsys)
    assert code == 0, err
    assert "2 new" in out and "the index holds 2 documents, 3 chunks" in out
    return index


def test_ingest_query_eval(tmp_path, capsys, kb, runs):
    index = ingested(capsys, kb, runs[0], tmp_path / "idx")
    code, out, err = genlab("rag", "query", index, "printer driver", "--mode", "bm25", "-k", "2", capsys=capsys)
    assert code == 0, err
    assert out.startswith("[1] ") and "notes.txt" in out.splitlines()[0]
    code, out, _ = genlab("rag", "query", index, "upgrade installer", "--json", "--doc", "guide/*", capsys=capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows and {r["doc_id"] for r in rows} == {"guide/install.md"}
    assert {"rank", "score", "chunk_id", "section", "text"} <= set(rows[0])

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "printer driver fix", "gold": "notes.txt"}) + "\n"
                  + json.dumps({"question": "how to upgrade", "gold": {"doc_id": "guide/install.md",
                                                                      "section": "Upgrade"}}) + "\n")  # fmt: skip
    code, out, err = genlab("rag", "eval", index, qa, "--mode", "bm25", "--mode", "hybrid", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["questions"] == 2 and set(result["retrieval"]) == {"bm25", "hybrid"}
    assert result["retrieval"]["bm25"]["recall@1"] == 1.0
    assert set(result["retrieval"]["hybrid"]) == {"recall@1", "recall@5", "recall@20", "mrr@20"}

    code, out, _ = genlab(
        "rag", "ingest", kb, "--index", index, "--embed-model", runs[0], "--no-progress", capsys=capsys
    )
    assert code == 0 and "0 new, 0 changed, 2 unchanged" in out


def test_bad_input_is_one_line_and_leaves_the_index_unchanged(tmp_path, capsys, kb, runs):
    fresh = tmp_path / "fresh"
    one_line_error(capsys, "rag", "ingest", tmp_path / "missing", "--index", fresh, "--embed-model", runs[0],
                   match="does not exist")  # fmt: skip
    assert not fresh.exists()
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, "rag", "ingest", tmp_path / "empty", "--index", fresh, match="no documents found")
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"\x7fELF\x00\x00\x00\x01")
    one_line_error(capsys, "rag", "ingest", blob, "--index", fresh, match="not a text file")
    assert not fresh.exists()

    index = ingested(capsys, kb, runs[0], tmp_path / "idx")
    before = fingerprint(index)
    one_line_error(capsys, "rag", "ingest", tmp_path / "missing", "--index", index, match="does not exist")
    one_line_error(capsys, "rag", "ingest", blob, "--index", index, match="not a text file")
    one_line_error(capsys, "rag", "ingest", kb, "--index", index, "--embed-model", runs[1], "--no-progress",
                   match=f"built with embeddings of {runs[0]}")  # fmt: skip
    one_line_error(capsys, "rag", "query", index, "installer", "--embed-model", runs[1],
                   match=f"the query model is {runs[1]} (dim 32): query with --embed-model {runs[0]}")  # fmt: skip
    one_line_error(capsys, "rag", "query", index, "word " * 300, "--mode", "dense", match="more than the embedding")
    one_line_error(capsys, "rag", "query", index, "x", "--mode", "sparse", match="unknown retrieval mode")
    assert fingerprint(index) == before
    one_line_error(capsys, "rag", "query", tmp_path / "kb", "x", match="not a genlab rag index")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "gold": 3}\n')
    one_line_error(capsys, "rag", "eval", index, bad, match="line 1: 'gold' must be")


def test_fusion_options_and_an_int8_index(tmp_path, capsys, kb, runs):
    index = ingested(capsys, kb, runs[0], tmp_path / "idx")
    for fusion in ("rrf", "minmax", "zscore"):
        code, out, err = genlab("rag", "query", index, "printer driver", "--fusion", fusion, "--bm25-weight", "5",
                                "--rrf-k", "10", "--json", capsys=capsys)  # fmt: skip
        assert code == 0, err
        assert json.loads(out.splitlines()[0])["doc_id"] == "notes.txt"
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "printer driver fix", "gold": "notes.txt"}) + "\n")
    code, out, err = genlab("rag", "eval", index, qa, "--mode", "hybrid", "--fusion", "rrf", capsys=capsys)
    assert code == 0, err
    result = json.loads(out)
    assert (result["fusion"], result["rrf_k"], result["bm25_weight"]) == ("rrf", 60, 0.2)
    one_line_error(capsys, "rag", "query", index, "x", "--fusion", "max", match="unknown fusion 'max'")

    q8 = tmp_path / "q8"
    code, out, err = genlab("rag", "ingest", kb, "--index", q8, "--embed-model", f"{runs[0]}+int8", "--no-progress",
                            capsys=capsys)  # fmt: skip
    assert code == 0, err
    code, out, err = genlab("rag", "query", q8, "printer driver", "--mode", "dense", capsys=capsys)
    assert code == 0, err  # the index's own int8 encoder
    one_line_error(capsys, "rag", "query", q8, "installer", "--embed-model", runs[0],
                   match=f"built with embeddings of {runs[0]}+int8")  # fmt: skip


def test_a_folder_that_is_not_an_index_is_not_overwritten(tmp_path, capsys, kb, runs):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    one_line_error(
        capsys, "rag", "ingest", kb, "--index", busy, "--embed-model", runs[0], match="is not a genlab rag index"
    )
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(not HAS_PYDOC, reason="needs python3-doc")
def test_questions_writes_the_python_faq_split(tmp_path, capsys):
    out_path = tmp_path / "faq.jsonl"
    code, out, _ = genlab("rag", "questions", "python-faq", out_path, "--split", "validation", capsys=capsys)
    assert code == 0 and "questions (python-faq, validation)" in out
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert rows and all(r["split"] == "validation" and r["gold"]["doc_id"].startswith("faq/") for r in rows)
    one_line_error(capsys, "rag", "questions", "python-faq", out_path, "--split", "dev", match="unknown split")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PYDOC, reason="needs python3-doc")
def test_minilm_finds_the_python_faq_section(tmp_path, capsys):
    faq = tmp_path / "docs" / "faq"
    shutil.copytree(PYTHON_DOC_SOURCES / "faq", faq)
    index = tmp_path / "py.rag"
    code, _, err = genlab("rag", "ingest", faq.parent, "--index", index, "--no-progress", capsys=capsys)
    assert code == 0, err
    code, out, _ = genlab("rag", "query", index, "Why does Python use indentation for grouping of statements?",
                          capsys=capsys)  # fmt: skip
    assert "faq/design.rst.txt § Design and History FAQ > Why does Python use indentation" in out.splitlines()[0]
    qa = tmp_path / "faq.jsonl"
    genlab("rag", "questions", "python-faq", qa, "--split", "all", capsys=capsys)
    code, out, _ = genlab("rag", "eval", index, qa, capsys=capsys)
    result = json.loads(out)["retrieval"]
    assert result["hybrid"]["recall@5"] > 0.8


def test_gold_matching_and_metrics_by_hand():
    from genlab.rag.types import Chunk
    from genlab.recipes.rag import matches, retrieval_metrics

    c = Chunk(1, "faq/design.rst.txt", "/x", "Design FAQ", "Design FAQ > Why indentation?", 0, "text")
    assert matches(c, {"doc_id": "faq/design.rst.txt", "section": "Why indentation?"})
    assert matches(c, {"doc_id": "design.rst.txt", "section": None})  # the same file from another root
    assert not matches(c, {"doc_id": "faq/design.rst.txt", "section": "indentation?"})  # whole headings only
    assert not matches(c, {"doc_id": "faq/general.rst.txt", "section": None})
    m = retrieval_metrics([1, 3, None, 25], ks=(1, 5, 20))
    assert m == {"recall@1": 0.25, "recall@5": 0.5, "recall@20": 0.5, "mrr@20": pytest.approx((1 + 1 / 3) / 4)}
