"""Tokenizers: text <-> token ids.

Three kinds, one interface (``encode``, ``encode_np``, ``decode``, ``vocab_size``,
``eos_id``, ``fingerprint()``, ``save(dir)``):

- :class:`CharTokenizer`: one id per character (tiny vocabulary, nothing to learn).
- :class:`BPETokenizer`: byte-level BPE on Hugging Face ``tokenizers`` (GPT-2 style).
- :class:`WordPieceTokenizer`: BERT's WordPiece on Hugging Face ``tokenizers``, with padded
  batches, attention masks and truncation for encoders.
- :class:`UnigramTokenizer`: a SentencePiece-style unigram model (``tokenizers``, Metaspace) with
  T5's sentinels, shared by an encoder-decoder's source and target.

All save to ``<dir>/tokenizer.json``; :func:`load_tokenizer` tells them apart by the file's
content (a Hugging Face tokenizer file has a ``"model"`` section whose ``"type"`` is
``"WordPiece"``, ``"Unigram"`` or ``"BPE"``, a genlab character file has ``"type": "char"``).

Tier 1: imports only ``genlab.core``, numpy and the ``tokenizers`` library.
"""

from __future__ import annotations

import json
from pathlib import Path

from genlab.core.errors import ConfigError, TokenizerError
from genlab.tokenizers.bpe import EOS_TOKEN, BPETokenizer
from genlab.tokenizers.char import TOKENIZER_FILE, CharTokenizer
from genlab.tokenizers.unigram import UnigramTokenizer
from genlab.tokenizers.wordpiece import WordPieceTokenizer

__all__ = [
    "EOS_TOKEN",
    "TOKENIZER_FILE",
    "BPETokenizer",
    "CharTokenizer",
    "UnigramTokenizer",
    "WordPieceTokenizer",
    "load_tokenizer",
    "train_tokenizer",
]

#: Vocabulary size :func:`train_tokenizer` uses for BPE when none is given.
DEFAULT_BPE_VOCAB = 8192


def load_tokenizer(directory: str | Path) -> CharTokenizer | BPETokenizer | WordPieceTokenizer | UnigramTokenizer:
    """Load the tokenizer saved in ``directory`` (or the ``tokenizer.json`` path itself)."""
    path = Path(directory)
    if path.is_dir() or path.name != TOKENIZER_FILE:
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise TokenizerError(
            f"no tokenizer at {path}: point to the folder a tokenizer was saved in "
            "(a run directory has one) or train one first"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(
            f"{path} is corrupt (not UTF-8 JSON: {exc}): delete it and save the tokenizer again"
        ) from exc
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} is not a tokenizer file (expected a JSON object): save it again")
    if data.get("type") == "char":
        return CharTokenizer.from_dict(data, source=str(path))
    if isinstance(data.get("model"), dict) and data["model"].get("type") == "WordPiece":
        return WordPieceTokenizer.from_file(path)
    if isinstance(data.get("model"), dict) and data["model"].get("type") == "Unigram":
        return UnigramTokenizer.from_file(path)
    if "model" in data:
        return BPETokenizer.from_file(path)
    raise TokenizerError(
        f"{path} is neither a genlab character tokenizer nor a Hugging Face tokenizer.json: save the tokenizer again"
    )


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> CharTokenizer | BPETokenizer:
    """Train a ``"char"``, ``"bpe"`` or ``"chat-bpe"`` (BPE + the chat role tokens) tokenizer on ``text``.

    ``vocab_size`` is the BPE target (default :data:`DEFAULT_BPE_VOCAB`); a character
    vocabulary is whatever characters the text holds, so for ``"char"`` it only serves
    as a check that the text does not need more.
    """
    if kind == "char":
        tok = CharTokenizer.train(text)
        if vocab_size is not None and tok.vocab_size > vocab_size:
            raise TokenizerError(
                f"the text has {tok.vocab_size} distinct characters, "
                f"more than vocab_size={vocab_size}: "
                "raise vocab_size or leave it unset for a character tokenizer"
            )
        return tok
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size=vocab_size or DEFAULT_BPE_VOCAB)
    if kind == "chat-bpe":  # BPE with the chat role tokens as special tokens (genlab.tokenizers.chat)
        from genlab.tokenizers.chat import train_chat_bpe

        return train_chat_bpe(text, vocab_size=vocab_size or DEFAULT_BPE_VOCAB)
    raise ConfigError(f"unknown tokenizer kind {kind!r}: use 'char' or 'bpe' (or 'chat-bpe': BPE + chat role tokens)")
