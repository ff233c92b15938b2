"""WordPiece tokenizer (BERT style) on the Hugging Face ``tokenizers`` library.

WordPiece (Schuster & Nakajima 2012; Wu et al. 2016, arXiv:1609.08144) splits each word greedily
into the longest vocabulary pieces from the left; pieces after the first carry a ``##`` prefix,
and a word that cannot be split becomes ``[UNK]``. BERT's pipeline (Devlin et al. 2018):

    BertNormalizer (clean control characters, space out CJK, lowercase for uncased models)
    -> BertPreTokenizer (split on whitespace and punctuation) -> WordPiece
    -> post-processor: [CLS] A [SEP]  (pairs: [CLS] A [SEP] B [SEP], segments 0 then 1)

:class:`WordPieceTokenizer` loads any such ``tokenizer.json`` (the one sentence-transformers and
``transformers`` ship), or trains one, and adds what an encoder needs: batches padded with
``[PAD]`` plus attention masks and segment ids, and sequences longer than ``max_length``
truncated with a warning or refused with a TokenizerError, by option. Padding and truncation
settings stored in the file are cleared on load (MiniLM's file pads everything to 128): the
wrapper pads to the longest sequence of each batch instead.

Tier 1: imports only ``genlab.core``, numpy and the ``tokenizers`` library.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from genlab.core.errors import TokenizerError
from genlab.tokenizers.bpe import HFTokenizerFile, _one_line, read_hf_tokenizer
from genlab.tokenizers.char import TOKENIZER_FILE

CLS_TOKEN, SEP_TOKEN, PAD_TOKEN, MASK_TOKEN, UNK_TOKEN = "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"
#: BERT's special tokens, in the order training gives them ids 0..4 (BERT's own vocabulary has
#: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103).
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)
#: What ``truncation`` may be: cut with a ``warnings.warn``, cut quietly (the caller reports), or refuse.
TRUNCATION = ("warn", "silent", "error")

Text = str | tuple[str, str]  # one text, or a pair (sentence A, sentence B)


@dataclass
class Tokenized:
    """Unpadded token ids of a batch of texts, with the special tokens."""

    ids: list[list[int]]
    type_ids: list[list[int]]  # segment of each token: 0 for sentence A, 1 for B
    lengths: np.ndarray  # (N,) int64, tokens of each text before truncation
    truncated: list[int]  # indices of the texts cut to max_length

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Batch:
    """A padded batch: numpy int64 arrays of shape (B, T), T = the longest sequence."""

    input_ids: np.ndarray
    attention_mask: np.ndarray  # 1 = token, 0 = padding
    token_type_ids: np.ndarray


class WordPieceTokenizer(HFTokenizerFile):
    """A BERT-style WordPiece tokenizer wrapping a ``tokenizers.Tokenizer``."""

    kind = "wordpiece"
    #: BERT has no end-of-text token (generation code reads ``eos_id``).
    eos_id: int | None = None

    def __init__(self, tokenizer: Tokenizer, source: str = TOKENIZER_FILE) -> None:
        tokenizer.no_padding()  # the wrapper pads per batch
        tokenizer.no_truncation()  # and truncates by its own option
        self.hf = tokenizer
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(
                f"{source} has no {', '.join(missing)} token: a BERT WordPiece tokenizer needs "
                f"{', '.join(SPECIAL_TOKENS)}"
            )
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (int(ids[t]) for t in SPECIAL_TOKENS)
        self.special_ids = frozenset(int(i) for i in ids.values())
        self._truncating: dict[int, Tokenizer] = {}

    # ---------------------------------------------------------------- building
    @classmethod
    def train(
        cls,
        text_or_iterator: str | Iterable[str],
        vocab_size: int = 8192,
        lowercase: bool = True,
        min_frequency: int = 2,
    ) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary with BERT's normaliser, pre-tokenizer and special tokens.

        The special tokens take ids 0..4 in the order of :data:`SPECIAL_TOKENS`.
        """
        if vocab_size < len(SPECIAL_TOKENS) + 1:
            raise TokenizerError(f"vocab_size={vocab_size} is too small: use at least {len(SPECIAL_TOKENS) + 1}")
        tok = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        if isinstance(text_or_iterator, str):
            text_or_iterator = text_or_iterator.splitlines()
        tok.train_from_iterator(text_or_iterator, trainer=trainer)
        cls_id, sep_id = tok.token_to_id(CLS_TOKEN), tok.token_to_id(SEP_TOKEN)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0",
            pair=f"{CLS_TOKEN}:0 $A:0 {SEP_TOKEN}:0 $B:1 {SEP_TOKEN}:1",
            special_tokens=[(CLS_TOKEN, cls_id), (SEP_TOKEN, sep_id)],
        )
        return cls(tok)

    # ---------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text`` (without [CLS]/[SEP] unless ``add_special_tokens``)."""
        try:
            return self.hf.encode(text, add_special_tokens=add_special_tokens).ids
        except Exception as exc:  # the Rust side raises plain exceptions
            raise TokenizerError(f"could not encode the text: {_one_line(exc)}") from exc

    def encode_np(self, text: str, add_special_tokens: bool = False) -> np.ndarray:
        return np.asarray(self.encode(text, add_special_tokens), dtype=np.int64)

    def tokenize(
        self,
        texts: Sequence[Text],
        max_length: int | None = None,
        truncation: str = "warn",
        add_special_tokens: bool = True,
    ) -> Tokenized:
        """Encode a batch of texts or (A, B) pairs, in parallel, without padding.

        A sequence longer than ``max_length`` tokens (special tokens included) is cut to it,
        keeping the closing [SEP] (pairs: the longer side first), with ``truncation="warn"``
        (a warning) or ``"silent"`` (``Tokenized.truncated`` says which); ``"error"`` raises a
        TokenizerError naming the text and its length.
        """
        if truncation not in TRUNCATION:
            raise TokenizerError(f"truncation={truncation!r} is not one of {TRUNCATION}")
        if max_length is not None and max_length < (3 if add_special_tokens else 1):
            raise TokenizerError(f"max_length={max_length} leaves no room for a token and [CLS]/[SEP]")
        texts = list(texts)
        for i, t in enumerate(texts):
            ok = isinstance(t, str) or (isinstance(t, tuple) and len(t) == 2 and all(isinstance(s, str) for s in t))
            if not ok:
                raise TokenizerError(f"text {i} is a {type(t).__name__}, not a string or a pair of strings")
        encodings = self._encode(self.hf, texts, add_special_tokens)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        truncated = [] if max_length is None else np.flatnonzero(lengths > max_length).tolist()
        if truncated:
            first = truncated[0]
            if truncation == "error":
                raise TokenizerError(
                    f"text {first} has {lengths[first]} tokens, more than max_length={max_length}"
                    f"{f' (and {len(truncated) - 1} more texts are too long)' if len(truncated) > 1 else ''}: "
                    "shorten it or allow truncation"
                )
            cut = self._encode(self._truncator(max_length), [texts[i] for i in truncated], add_special_tokens)
            for i, e in zip(truncated, cut):
                encodings[i] = e
            if truncation == "warn":
                warnings.warn(
                    f"{len(truncated)} of {len(texts)} texts are longer than max_length={max_length} tokens "
                    f"and were truncated (the longest has {lengths[truncated].max()})",
                    stacklevel=2,
                )
        return Tokenized([e.ids for e in encodings], [e.type_ids for e in encodings], lengths, truncated)

    def pad(self, tokenized: Tokenized, rows: Sequence[int] | np.ndarray | None = None) -> Batch:
        """Rows ``rows`` (default: all) of ``tokenized`` as one batch padded to its longest sequence."""
        rows = range(len(tokenized)) if rows is None else [int(r) for r in rows]
        seqs = [tokenized.ids[r] for r in rows]
        n = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        width = int(n.max()) if len(n) else 0
        mask = (np.arange(width)[None, :] < n[:, None]).astype(np.int64)  # (B, T)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(seqs), width), dtype=np.int64)
        ids[mask.astype(bool)] = np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(n.sum()))
        types[mask.astype(bool)] = np.fromiter(
            (i for r in rows for i in tokenized.type_ids[r]), dtype=np.int64, count=int(n.sum())
        )
        return Batch(ids, mask, types)

    def encode_batch(self, texts: Sequence[Text], max_length: int | None = None, truncation: str = "warn") -> Batch:
        """Texts or (A, B) pairs -> a padded batch with [CLS]/[SEP], attention mask and segment ids."""
        return self.pad(self.tokenize(texts, max_length, truncation))

    def decode(self, ids: Iterable[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
        """Text for token ids (list, numpy array or 1-D tensor); ``##`` pieces are joined."""
        seq = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)
        if seq.size and (seq.min() < 0 or seq.max() >= self.vocab_size):
            bad = int(seq[(seq < 0) | (seq >= self.vocab_size)][0])
            raise TokenizerError(
                f"token id {bad} is outside the vocabulary of {self.vocab_size} tokens: "
                "decode with the tokenizer the model was trained with"
            )
        return self.hf.decode(seq.tolist(), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self.hf.id_to_token(token_id)

    def _encode(self, tok: Tokenizer, texts: list[Text], add_special_tokens: bool) -> list:
        # encode_batch_fast skips offset bookkeeping (tokenizers >= 0.20).
        batch = getattr(tok, "encode_batch_fast", tok.encode_batch)
        try:
            return batch(texts, add_special_tokens=add_special_tokens)
        except Exception as exc:
            raise TokenizerError(f"could not encode the texts: {_one_line(exc)}") from exc

    def _truncator(self, max_length: int) -> Tokenizer:
        """A copy of the tokenizer that truncates to ``max_length`` (the library's longest-first rule)."""
        if max_length not in self._truncating:
            tok = Tokenizer.from_str(self.hf.to_str())
            tok.enable_truncation(max_length)
            self._truncating[max_length] = tok
        return self._truncating[max_length]

    @classmethod
    def from_file(cls, path: str | Path) -> WordPieceTokenizer:
        """Load a Hugging Face ``tokenizer.json`` with a WordPiece model."""
        return cls(read_hf_tokenizer(path), source=str(path))

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size})"
