"""Character tokenizer: vocabulary, fast encoding, errors, save/load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.errors import ConfigError, TokenizerError
from genlab.tokenizers import CharTokenizer, load_tokenizer, train_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


def test_vocabulary_is_the_sorted_unique_characters() -> None:
    tok = CharTokenizer.train(TEXT)
    assert tok.chars == sorted(set(TEXT))
    assert tok.vocab_size == len(set(TEXT))
    assert tok.encode("\n") == [0]  # '\n' sorts first


def test_encode_matches_a_plain_python_reference_and_round_trips() -> None:
    text = TEXT + "héllo 漢字 👋 e\u0301"
    tok = CharTokenizer.train(text)
    index = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = tok.encode_np(text)
    assert ids.dtype == np.int64
    assert ids.tolist() == [index[c] for c in text] == tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_unknown_characters_are_named_in_the_error() -> None:
    tok = CharTokenizer.train("abc")
    with pytest.raises(TokenizerError) as info:
        tok.encode("abcé☃")
    message = str(info.value)
    assert "'é'" in message and "'☃'" in message
    assert "vocabulary of 3 characters" in message
    with pytest.raises(TokenizerError, match="and 2 more"):
        tok.encode("defghij")  # 7 unknown: the first 5 shown


def test_decode_rejects_ids_outside_the_vocabulary() -> None:
    tok = CharTokenizer.train("abc")
    with pytest.raises(TokenizerError, match="token id 3"):
        tok.decode([0, 3])
    with pytest.raises(TokenizerError, match="token id -1"):
        tok.decode([-1])


def test_training_needs_text() -> None:
    with pytest.raises(TokenizerError):
        CharTokenizer.train("")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    tok = CharTokenizer.train(TEXT + "漢字👋")
    path = tok.save(tmp_path / "tok")
    assert path == tmp_path / "tok" / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "char" and data["chars"] == "".join(tok.chars)
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, CharTokenizer)
    assert loaded.chars == tok.chars
    assert loaded.fingerprint() == tok.fingerprint()
    assert loaded.encode(TEXT) == tok.encode(TEXT)


def test_fingerprint_tracks_the_vocabulary() -> None:
    assert CharTokenizer.train("abc").fingerprint() == CharTokenizer.train("cba").fingerprint()
    assert CharTokenizer.train("abc").fingerprint() != CharTokenizer.train("abd").fingerprint()


def test_load_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{ truncated")
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"type": "unknown"}')
    with pytest.raises(TokenizerError, match="neither"):
        load_tokenizer(tmp_path)


def test_train_tokenizer_dispatch() -> None:
    assert isinstance(train_tokenizer("char", TEXT), CharTokenizer)
    with pytest.raises(TokenizerError, match="distinct characters"):
        train_tokenizer("char", TEXT, vocab_size=5)
    with pytest.raises(ConfigError, match="'char' or 'bpe'"):
        train_tokenizer("word", TEXT)


def test_encoding_five_megabytes_is_fast() -> None:
    text = (TEXT * (5_000_000 // len(TEXT) + 1))[:5_000_000]
    tok = CharTokenizer.train(text)
    start = time.perf_counter()
    ids = tok.encode_np(text)
    elapsed = time.perf_counter() - start
    assert ids.shape == (5_000_000,)
    assert elapsed < 1.0, f"encode_np took {elapsed:.2f}s for 5 MB"
