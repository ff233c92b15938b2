"""SentencePiece-style unigram tokenizer for encoder-decoders (T5, BART, PEGASUS), shared by source and target.

The unigram language model (Kudo 2018, arXiv:1804.10959) treats a text as a sequence of pieces
drawn independently from a vocabulary V with probabilities p(x), and segments each word by
Viterbi into the most likely pieces::

    x* = argmax_{x in S(w)}  sum_i log p(x_i)

Training starts from a large seed vocabulary (frequent substrings) and alternates EM
re-estimation of p with pruning the pieces whose removal costs the corpus likelihood least,
until |V| = ``vocab_size``. SentencePiece (Kudo & Richardson 2018, arXiv:1808.06226) runs it on
raw text with whitespace kept as the meta symbol ``▁`` (U+2581), so decoding is lossless up to
whitespace runs: the ``Metaspace`` pre-tokenizer and decoder do this here. Text is NFKC-normalised,
as T5's SentencePiece model is.

Vocabulary layout (ids):

    0 <pad>   1 </s>   2 <unk>   3 <s>   4 <mask>   5 <mask_1>   6 <mask_2>
    7 .. V-101   the learned pieces
    V-100 .. V-1 <extra_id_99> .. <extra_id_0>

``<pad>``, ``</s>`` and ``<unk>`` have T5's ids, and the 100 sentinels sit at the top of the
vocabulary as in T5 (``<extra_id_0>`` is the last id), so span corruption's sentinels count down
from V-1. ``<s>`` and ``<mask>`` serve BART's noising (BART starts the decoder with ``</s>``, T5 with
``<pad>``: the recipe chooses), ``<mask_1>`` / ``<mask_2>`` PEGASUS's masked sentences and tokens.
:meth:`UnigramTokenizer.encode` appends ``</s>`` (the file's post-processor, so
``transformers.PreTrainedTokenizerFast`` does the same).

Training is deterministic: the same texts and settings give the same file. The library's trainer
alone is not (its sums run over hash maps in a random order: scores move by ~1e-11 and tied
pieces swap ids), so scores are rounded to 4 decimals and pieces sorted by score, then piece.

Tier 1: imports only ``genlab.core``, numpy and the ``tokenizers`` library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from genlab.core.errors import TokenizerError
from genlab.tokenizers.bpe import HFTokenizerFile, _one_line, read_hf_tokenizer

PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, BOS_TOKEN, MASK_TOKEN = "<pad>", "</s>", "<unk>", "<s>", "<mask>"
#: PEGASUS's masks: a whole gap sentence (MASK1) and a masked token (MASK2).
SENTENCE_MASK_TOKEN, TOKEN_MASK_TOKEN = "<mask_1>", "<mask_2>"
#: The special tokens, in id order 0.. (the sentinels come after the learned pieces).
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, BOS_TOKEN, MASK_TOKEN, SENTENCE_MASK_TOKEN, TOKEN_MASK_TOKEN)
#: T5's sentinel count.
N_SENTINELS = 100


def sentinel_token(i: int) -> str:
    """``<extra_id_i>``: the i-th masked span's placeholder in T5 span corruption."""
    return f"<extra_id_{i}>"


#: Decimals kept of each piece's log-probability (see :func:`_canonical`).
SCORE_DECIMALS = 4


def _canonical(tok: Tokenizer) -> models.Unigram:
    """The trained model made independent of the trainer's hash-map order.

    The library's trainer sums over hash maps in a random order, which moves scores by ~1e-11, and
    it appends the characters no learned piece covers with scores min - 1e-4 k, k following a hash
    set's order. So: scores are rounded to :data:`SCORE_DECIMALS`, the bottom run of pieces whose
    scores step by at most 1.5e-4 (those characters, and any learned piece among them) gets one
    score, its lowest, and the pieces are sorted by (score descending, piece). Two trainings on the
    same texts then write the same file.
    """
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    n = len(SPECIAL_TOKENS)
    learned = sorted(((piece, round(score, SCORE_DECIMALS)) for piece, score in vocab[n:]), key=lambda x: -x[1])
    top = len(learned) - 1  # the tail's first piece
    while top > 0 and learned[top - 1][1] - learned[top][1] <= 1.5e-4:
        top -= 1
    if top < len(learned) - 1:
        floor = learned[-1][1]
        learned[top:] = [(piece, floor) for piece, _ in learned[top:]]
    learned.sort(key=lambda x: (-x[1], x[0]))
    return models.Unigram([(piece, 0.0) for piece in SPECIAL_TOKENS] + learned, unk_id=SPECIAL_TOKENS.index(UNK_TOKEN),
                          byte_fallback=False)  # fmt: skip


class UnigramTokenizer(HFTokenizerFile):
    """A unigram (SentencePiece-style) tokenizer wrapping a ``tokenizers.Tokenizer``."""

    kind = "unigram"

    def __init__(self, tokenizer: Tokenizer, source: str = "tokenizer.json") -> None:
        self.hf = tokenizer
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"{source} has no {', '.join(missing)} token: train it with UnigramTokenizer.train")
        (self.pad_id, self.eos_id, self.unk_id, self.bos_id, self.mask_id, self.sentence_mask_id,
         self.token_mask_id) = (int(ids[t]) for t in SPECIAL_TOKENS)  # fmt: skip
        sentinels = []
        while (i := tokenizer.token_to_id(sentinel_token(len(sentinels)))) is not None:
            sentinels.append(int(i))
        #: ``sentinel_ids[i]`` is the id of ``<extra_id_i>``.
        self.sentinel_ids: list[int] = sentinels
        self.special_ids = frozenset([*ids.values(), *sentinels])

    # ---------------------------------------------------------------- building
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        n_sentinels: int = N_SENTINELS,
        max_piece_length: int = 16,
        shrinking_factor: float = 0.75,
    ) -> UnigramTokenizer:
        """Learn a unigram vocabulary of ``vocab_size`` ids in all (specials, pieces, sentinels).

        ``texts`` is every text the model will read, source and target sides together (one
        vocabulary shared by encoder and decoder, T5's and BART's choice).
        """
        n_learned = vocab_size - len(SPECIAL_TOKENS) - n_sentinels
        if n_learned < 16:
            raise TokenizerError(
                f"vocab_size={vocab_size} leaves {n_learned} learned pieces after "
                f"{len(SPECIAL_TOKENS)} special tokens and {n_sentinels} sentinels: raise it"
            )
        if not 0 <= n_sentinels <= 1000:
            raise TokenizerError(f"n_sentinels={n_sentinels} must be between 0 and 1000")
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size - n_sentinels,
            special_tokens=list(SPECIAL_TOKENS),
            unk_token=UNK_TOKEN,
            max_piece_length=max_piece_length,
            shrinking_factor=shrinking_factor,
            show_progress=False,
        )
        texts = [texts] if isinstance(texts, str) else texts
        tok.train_from_iterator((t for t in texts if t), trainer=trainer)
        tok.model = _canonical(tok)
        # Sentinels at the top, <extra_id_0> last (T5's order): added from 99 down to 0.
        tok.add_special_tokens([sentinel_token(i) for i in reversed(range(n_sentinels))])
        eos = tok.token_to_id(EOS_TOKEN)
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A:0 {EOS_TOKEN}:0",
            pair=f"$A:0 {EOS_TOKEN}:0 $B:0 {EOS_TOKEN}:0",
            special_tokens=[(EOS_TOKEN, eos)],
        )
        return cls(tok)

    # ---------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def sentinel_id(self, i: int) -> int:
        """The id of ``<extra_id_i>``."""
        if not 0 <= i < len(self.sentinel_ids):
            raise TokenizerError(f"sentinel {i} does not exist: this vocabulary has {len(self.sentinel_ids)}")
        return self.sentinel_ids[i]

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        """Token ids of ``text``, ending in ``</s>`` unless ``add_eos=False``."""
        try:
            return self.hf.encode(text, add_special_tokens=add_eos).ids
        except Exception as exc:  # the Rust side raises plain exceptions
            raise TokenizerError(f"could not encode the text: {_one_line(exc)}") from exc

    def encode_np(self, text: str, add_eos: bool = True) -> np.ndarray:
        return np.asarray(self.encode(text, add_eos), dtype=np.int64)

    def encode_batch(self, texts: Sequence[str], add_eos: bool = True) -> list[list[int]]:
        """Token ids of each text (in parallel), each ending in ``</s>`` unless ``add_eos=False``."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TokenizerError(f"text {i} is a {type(t).__name__}, not a string")
        batch = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        try:
            return [e.ids for e in batch(texts, add_special_tokens=add_eos)]
        except Exception as exc:
            raise TokenizerError(f"could not encode the texts: {_one_line(exc)}") from exc

    def decode(self, ids: Iterable[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
        """Text for token ids (list, numpy array or 1-D tensor); ``▁`` becomes a space."""
        seq = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)
        if seq.size and (seq.min() < 0 or seq.max() >= self.vocab_size):
            bad = int(seq[(seq < 0) | (seq >= self.vocab_size)][0])
            raise TokenizerError(f"token id {bad} is outside the vocabulary of {self.vocab_size} tokens: "
                                 "decode with the tokenizer the model was trained with")  # fmt: skip
        return self.hf.decode(seq.tolist(), skip_special_tokens=skip_special_tokens)

    def decode_batch(self, rows: Sequence[Sequence[int]], skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]

    def id_to_token(self, token_id: int) -> str | None:
        return self.hf.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    @classmethod
    def from_file(cls, path: str | Path) -> UnigramTokenizer:
        """Load a Hugging Face ``tokenizer.json`` with a Unigram model and genlab's special tokens."""
        return cls(read_hf_tokenizer(path), source=str(path))

    def __repr__(self) -> str:
        return f"UnigramTokenizer(vocab_size={self.vocab_size}, sentinels={len(self.sentinel_ids)})"
