"""Byte-level BPE: lossless round trip on arbitrary Unicode, special tokens, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from genlab.core.errors import TokenizerError
from genlab.tokenizers import EOS_TOKEN, BPETokenizer, bpe, load_tokenizer, train_tokenizer

CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius Marcius is chief enemy "
    "to the people.\n\n"
) * 8 + "Ça va? 東京タワー 👋🏽 naïve café 1234 5678\n"

# Grapheme clusters and characters that stress byte-level handling.
PIECES = [
    "👩\u200d👩\u200d👧",  # ZWJ family emoji
    "🇫🇷",  # regional indicators
    "👋🏽",  # skin-tone modifier
    "e\u0301",  # combining acute accent
    "漢字",
    "かな",
    "한국어",
    "\u0000",
    "\r\n",
    "\t\t",
    "   ",
    "\n\n\n",
    "\u00a0",
    "\ufeff",
    "a",
    "The",
    "'s",
    "123",
    EOS_TOKEN,
]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=300)


def test_training_reaches_the_requested_vocabulary(tok: BPETokenizer) -> None:
    assert tok.vocab_size == 300
    assert tok.eos_id == 0
    assert tok.id_to_token(0) == EOS_TOKEN


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        st.text(),
        st.lists(st.sampled_from(PIECES), max_size=20).map("".join),
        st.lists(st.one_of(st.text(max_size=5), st.sampled_from(PIECES)), max_size=10).map("".join),
    )
)
@example(text="")
@example(text="👩\u200d👩\u200d👧 🇫🇷 e\u0301 漢字かな   \t\n\n  x")
@example(text="".join(chr(i) for i in range(256)))
def test_decode_inverts_encode_for_any_text(tok: BPETokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.encode_np(text).tolist() == ids


def test_special_token_in_text_maps_to_eos(tok: BPETokenizer) -> None:
    ids = tok.encode(f"Speak.{EOS_TOKEN}First")
    assert ids.count(tok.eos_id) == 1
    assert tok.decode(ids) == f"Speak.{EOS_TOKEN}First"


def test_chunked_encoding_equals_one_shot_encoding(tok: BPETokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    text = CORPUS + "  indented\n\tline\n\n\nend  \n"
    one_shot = tok.hf.encode(text, add_special_tokens=False).ids
    monkeypatch.setattr(bpe, "_CHUNK_CHARS", 37)  # force many pieces
    assert len(bpe._pieces(text, 37)) > 10
    assert tok.encode_np(text).tolist() == one_shot


def test_save_writes_a_hugging_face_tokenizer_json(tok: BPETokenizer, tmp_path: Path) -> None:
    path = tok.save(tmp_path / "bpe")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["model"]["type"] == "BPE"
    assert data["pre_tokenizer"]["type"] == "ByteLevel"
    assert data["pre_tokenizer"]["add_prefix_space"] is False
    # What Hugging Face itself loads: the library's own Tokenizer class. (Reached through
    # the instance: ruff would sort a plain `import tokenizers` here as first-party.)
    hf = type(tok.hf).from_file(str(path))
    assert type(hf).__module__.startswith("tokenizers")
    assert hf.encode(CORPUS).ids == tok.encode(CORPUS)

    loaded = load_tokenizer(tmp_path / "bpe")
    assert isinstance(loaded, BPETokenizer)
    assert loaded.fingerprint() == tok.fingerprint()
    assert loaded.eos_id == tok.eos_id
    assert loaded.encode(CORPUS) == tok.encode(CORPUS)


def test_fingerprint_differs_between_vocabularies(tok: BPETokenizer) -> None:
    other = BPETokenizer.train(CORPUS, vocab_size=280)
    assert other.fingerprint() != tok.fingerprint()


def test_bad_vocab_size_and_ids(tok: BPETokenizer) -> None:
    with pytest.raises(TokenizerError, match="at least 257"):
        BPETokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(TokenizerError, match="token id 300"):
        tok.decode([1, 300])
    with pytest.raises(TokenizerError, match="token id -1"):
        tok.decode([-1, 2])


def test_decode_knows_tokens_added_after_training(tok: BPETokenizer) -> None:
    other = BPETokenizer.train(CORPUS, vocab_size=280)
    other.hf.add_tokens(["<|unused0|>"])
    assert other.decode([other.vocab_size - 1]) == "<|unused0|>"
    with pytest.raises(TokenizerError, match=f"outside the vocabulary of {other.vocab_size}"):
        other.decode([other.vocab_size])


def test_train_tokenizer_bpe() -> None:
    trained = train_tokenizer("bpe", CORPUS, vocab_size=270)
    assert isinstance(trained, BPETokenizer) and trained.vocab_size == 270


def test_training_from_an_iterator(tok: BPETokenizer) -> None:
    lines = CORPUS.splitlines(keepends=True)
    from_lines = BPETokenizer.train(iter(lines), vocab_size=300)
    assert from_lines.decode(from_lines.encode(CORPUS)) == CORPUS
