"""Byte-level BPE tokenizer (GPT-2 style) on the Hugging Face ``tokenizers`` library.

Byte-pair encoding (Sennrich et al. 2016, arXiv:1508.07909) starts from single symbols
and repeatedly merges the most frequent adjacent pair into a new symbol until the
vocabulary reaches ``vocab_size``. Byte-level BPE (Radford et al. 2019, GPT-2) runs it over
the UTF-8 *bytes* of the text, each byte shown as one printable character
(``ByteLevel.alphabet()``, 256 symbols). Seeding the trainer with that whole alphabet means
every byte, and so every Unicode string, is representable: there is no unknown token and

    decode(encode(s)) == s    for every string s without lone surrogates.

Pipeline: ``ByteLevel`` pre-tokenizer (GPT-2 regex split into words/numbers/punctuation/
whitespace, no added prefix space) -> ``BPE`` model -> ``ByteLevel`` decoder. The file
:meth:`BPETokenizer.save` writes is the library's own ``tokenizer.json``, which
``transformers.PreTrainedTokenizerFast(tokenizer_file=...)`` loads as-is.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from genlab.core.errors import TokenizerError
from genlab.tokenizers.char import TOKENIZER_FILE

#: The end-of-text token GPT-2 uses between documents.
EOS_TOKEN = "<|endoftext|>"

# Long texts are cut into pieces of about this many characters and encoded as a batch:
# the library encodes one huge string slowly (super-linear) and on one thread only.
_CHUNK_CHARS = 1 << 16

# A cut right after a newline that is followed by a non-space character never changes the
# tokens: the GPT-2 pre-tokenizer always ends a piece there (no pattern starts with "\n"
# followed by a letter, digit or symbol, and the newline run ends at that character).
_SAFE_CUT = re.compile(r"\n(?=\S)")


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (Rust errors can span several)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _pieces(text: str, size: int) -> list[str]:
    """``text`` cut at safe points into pieces of roughly ``size`` characters."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = start + size
        if end >= len(text):
            end = len(text)
        else:
            cut = _SAFE_CUT.search(text, end)
            end = cut.end() if cut else len(text)
        pieces.append(text[start:end])
        start = end
    return pieces


def _training_batches(text_or_iterator: str | Iterable[str]) -> Iterator[str]:
    """Training input as an iterator of strings (a long string is cut into pieces)."""
    if isinstance(text_or_iterator, str):
        yield from _pieces(text_or_iterator, _CHUNK_CHARS)
    else:
        for item in text_or_iterator:
            if not isinstance(item, str):
                raise TokenizerError(f"BPE training expects strings, got {type(item).__name__}")
            yield item


def read_hf_tokenizer(path: str | Path) -> Tokenizer:
    """A Hugging Face ``tokenizer.json``, or a one-line TokenizerError saying it cannot be loaded."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise TokenizerError(
            f"{path} is not a loadable Hugging Face tokenizer.json ({_one_line(exc)}): re-save it"
        ) from exc


class HFTokenizerFile:
    """``fingerprint()`` and ``save()`` for the tokenizers that wrap a Hugging Face ``Tokenizer`` as ``self.hf``."""

    hf: Tokenizer

    def fingerprint(self) -> str:
        """sha256 of the serialized tokenizer: equal fingerprints mean identical encodings."""
        return hashlib.sha256(self.hf.to_str().encode("utf-8")).hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write the Hugging Face ``directory/tokenizer.json`` (atomically); return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        self.hf.save(str(tmp), pretty=True)
        os.replace(tmp, path)
        return path


class BPETokenizer(HFTokenizerFile):
    """A byte-level BPE tokenizer wrapping a ``tokenizers.Tokenizer``."""

    kind = "bpe"

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.hf = tokenizer
        self.eos_id: int | None = tokenizer.token_to_id(EOS_TOKEN)

    # ---------------------------------------------------------------- building
    @classmethod
    def train(
        cls,
        text_or_iterator: str | Iterable[str],
        vocab_size: int = 8192,
        special_tokens: Sequence[str] = (EOS_TOKEN,),
        min_frequency: int = 2,
    ) -> BPETokenizer:
        """Learn merges from a string or an iterable of strings (documents, lines, ...).

        The vocabulary is the special tokens (ids 0..), the 256 byte symbols, then the
        merges in the order they were learned, up to ``vocab_size`` entries in all (fewer
        when the text runs out of pairs seen ``min_frequency`` times).
        """
        floor = 256 + len(special_tokens)
        if vocab_size < floor:
            raise TokenizerError(
                f"vocab_size={vocab_size} is too small for byte-level BPE: use at least {floor} "
                f"(256 bytes + {len(special_tokens)} special tokens)"
            )
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_training_batches(text_or_iterator), trainer=trainer)
        return cls(tok)

    # ---------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens written in the text map to their ids."""
        return self.encode_np(text).tolist()

    def encode_np(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as an int64 array, encoding long texts in parallel pieces."""
        if not text:
            return np.zeros(0, dtype=np.int64)
        pieces = _pieces(text, _CHUNK_CHARS)
        # encode_batch_fast skips offset bookkeeping (tokenizers >= 0.20).
        batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        try:
            encodings = batch(pieces, add_special_tokens=False)
        except Exception as exc:  # the Rust side raises plain exceptions
            raise TokenizerError(f"could not encode the text: {_one_line(exc)}") from exc
        return np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text for token ids (list, numpy array or 1-D tensor); special tokens are kept."""
        seq = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        seq = seq.reshape(-1)
        # id_to_token is one lookup; vocab_size (with added tokens) rebuilds the whole vocabulary
        # (~10 ms at 50k tokens), too slow for a server that decodes at every token
        if seq.size and (seq.min() < 0 or self.hf.id_to_token(int(seq.max())) is None):
            size = self.vocab_size
            out = (seq < 0) | (seq >= size)
            if out.any():
                raise TokenizerError(
                    f"token id {int(seq[out][0])} is outside the vocabulary of {size} tokens: "
                    "decode with the tokenizer the model was trained with"
                )
        return self.hf.decode(seq.tolist(), skip_special_tokens=False)

    def id_to_token(self, token_id: int) -> str | None:
        return self.hf.id_to_token(token_id)

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        """Load a Hugging Face ``tokenizer.json``."""
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as exc:
            raise TokenizerError(
                f"{path} is not a loadable Hugging Face tokenizer.json ({_one_line(exc)}): re-save or retrain it"
            ) from exc

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id})"
