"""Character-level tokenizer: one token per Unicode code point.

The vocabulary is the sorted set of characters seen in the training text, so token ids
follow code-point order (for tinyshakespeare: ``'\\n'`` is 0, ``' '`` is 1, ...). That is
the classic nanoGPT / char-rnn set-up: a tiny vocabulary, long sequences, and nothing to
download.

Encoding is vectorised: the text is viewed as an array of code points (via UTF-32) and
mapped through a lookup table indexed by code point, so a 5 MB text encodes in tens of
milliseconds. Decoding runs the table the other way and turns the code points back into
a string through UTF-32 as well.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from genlab.core.errors import TokenizerError

#: Name of the file ``save`` writes and ``load_tokenizer`` reads.
TOKENIZER_FILE = "tokenizer.json"

# How many unknown characters an error message shows.
_SHOW_UNKNOWN = 5


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` as a uint32 array (no copy beyond the UTF-32 encode)."""
    try:
        raw = text.encode("utf-32-le")
    except UnicodeEncodeError as exc:  # only lone surrogates get here
        raise TokenizerError(
            f"text contains a lone surrogate {text[exc.start]!r} at character {exc.start}: "
            "clean the text (e.g. decode the source file with errors='replace')"
        ) from exc
    return np.frombuffer(raw, dtype="<u4")


class CharTokenizer:
    """Maps each character to its index in a fixed, sorted character list.

    Build one with :meth:`train` (from text) or the constructor (from a character list),
    save it with :meth:`save`, and read it back with :func:`genlab.tokenizers.load_tokenizer`.
    """

    kind = "char"
    #: Character vocabularies have no end-of-text token.
    eos_id: int | None = None

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise TokenizerError("a character tokenizer needs at least one character: train it on some text")
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TokenizerError(f"vocabulary entry {c!r} is not a single character: rebuild the tokenizer")
        if len(set(chars)) != len(chars):
            raise TokenizerError("the character vocabulary has duplicates: rebuild the tokenizer")
        self.chars: list[str] = chars
        # id -> code point, and code point -> id (-1 where unknown). The table has one spare
        # slot at the end so that every out-of-range code point can be clipped onto a -1.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        table = np.full(int(self._codes.max()) + 2, -1, dtype=np.int64)
        table[self._codes] = np.arange(len(chars), dtype=np.int64)
        self._table = table

    # ---------------------------------------------------------------- building
    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """A tokenizer whose vocabulary is the sorted set of characters in ``text``."""
        if not text:
            raise TokenizerError("cannot train a character tokenizer on empty text: give it the corpus")
        points = _code_points(text)
        seen = np.zeros(int(points.max()) + 1, dtype=bool)
        seen[points] = True  # a presence table: faster than sorting millions of code points
        return cls([chr(int(p)) for p in np.flatnonzero(seen)])

    # ---------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode_np(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as an int64 array (vectorised; fit for whole corpora)."""
        points = _code_points(text)
        ids = self._table[np.minimum(points, len(self._table) - 1)]
        if ids.size and ids.min() < 0:
            unknown = points[ids < 0]
            distinct = np.unique(unknown)
            shown = ", ".join(repr(chr(int(p))) for p in distinct[:_SHOW_UNKNOWN])
            more = f" and {len(distinct) - _SHOW_UNKNOWN} more" if len(distinct) > _SHOW_UNKNOWN else ""
            raise TokenizerError(
                f"text has {len(unknown)} characters outside the vocabulary ({shown}{more}); "
                f"the model was trained on a vocabulary of {self.vocab_size} characters: "
                "remove them or retrain the tokenizer on text that contains them"
            )
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as a list of ints."""
        return self.encode_np(text).tolist()

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text for a sequence of token ids (a list, a numpy array or a 1-D tensor)."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)
        if arr.size == 0:
            return ""
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            first = int(arr[bad][0])
            raise TokenizerError(
                f"token id {first} is outside the vocabulary of {self.vocab_size} characters: "
                "decode with the tokenizer the model was trained with"
            )
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le")

    # ---------------------------------------------------------------- identity and files
    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: equal fingerprints mean identical encodings."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` (atomically) and return its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer.json") -> CharTokenizer:
        chars = data.get("chars")
        if not isinstance(chars, str) or not chars:
            raise TokenizerError(f"{source} has no 'chars' string: re-save the tokenizer")
        return cls(list(chars))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
