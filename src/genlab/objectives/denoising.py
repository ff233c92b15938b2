"""BART's noising functions and PEGASUS's gap-sentence generation: corrupted input -> original text.

BART (Lewis et al. 2020, arXiv:1910.13461, section 2.2) pretrains an encoder-decoder to rebuild a
document x from a corrupted copy g(x): ``L = -log p(x | g(x))``. The transformations, each a
function on token ids (sentences: lists of ids) with a seeded ``torch.Generator``:

- :func:`token_masking`: each token becomes ``<mask>`` with probability p (BERT-style).
- :func:`token_deletion`: each token is deleted with probability p; the model must find where.
- :func:`text_infilling`: spans with lengths l ~ Poisson(λ = 3) are drawn until they cover a
  fraction ``ratio`` of the tokens (the last one cut so that exactly round(ratio * n) tokens are
  covered); each span becomes ONE ``<mask>``, and a 0-length span inserts a ``<mask>``, so the
  model also learns how many tokens are missing. The spans are placed uniformly at random without
  overlapping: the n - k kept tokens leave n - k + 1 gaps, and each span picks one.
- :func:`sentence_permutation`: the sentences are shuffled.
- :func:`document_rotation`: a token is chosen uniformly and the document rotated to start there.

:class:`BartNoiseConfig` composes them in BART's order (permutation, masking, deletion,
infilling, rotation); BART-large's pretraining used text infilling with ratio 0.3 and permutation
of all sentences: the defaults.

PEGASUS (Zhang et al. 2020, arXiv:1912.08777, section 3.1): gap-sentence generation (GSG). Of a
document's n sentences, m = max(1, round(gap_ratio * n)) are removed and generated as the target,
each replaced in the input by ``<mask_1>`` ([MASK1]); the chosen sentences are the *principal*
ones, those with the highest ROUGE-1 F1 against the rest of the document::

    s_i = ROUGE1-F1(x_i, D \\ {x_i})                          independent ("Ind"): top-m by s_i
    S  <- S ∪ argmax_i ROUGE1-F1(S ∪ {x_i}, D \\ (S ∪ {x_i}))   sequential ("Seq"): greedy, m times

The target is the selected sentences in document order. ROUGE-1 is computed by :func:`rouge1_f1`
with rouge-score's tokenization (lower-cased, runs of [a-z0-9]); a test checks it equals
``rouge_score.rouge_scorer`` on real text. PEGASUS-large used Ind-Orig selection with gap ratio
0.3 and no token masking: the defaults (``token_mask_rate`` adds BERT-style ``<mask_2>`` masking
of the remaining tokens, the paper's MLM ablation).

Each objective returns (input_ids, labels): pad them into a batch with
:func:`genlab.data.parallel.collate_seq2seq`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from genlab.core.errors import ConfigError

Ids = list[int]


def _check_rate(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}={p} must lie in [0, 1]")


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator)


# ------------------------------------------------------------------------------------------
# BART's transformations.


def token_masking(
    ids: Sequence[int], mask_id: int, p: float, generator: torch.Generator | None = None, keep: frozenset = frozenset()
) -> Ids:
    """Each token, independently with probability ``p``, becomes ``mask_id`` (ids in ``keep`` never do)."""
    _check_rate("token masking p", p)
    x = torch.as_tensor(list(ids), dtype=torch.long)
    hit = _uniform(len(x), generator) < p
    if keep:
        hit &= ~torch.isin(x, torch.tensor(sorted(keep), dtype=torch.long))
    return torch.where(hit, torch.tensor(mask_id), x).tolist()


def token_deletion(
    ids: Sequence[int], p: float, generator: torch.Generator | None = None, keep: frozenset = frozenset()
) -> Ids:
    """Each token, independently with probability ``p``, is deleted (ids in ``keep`` never are)."""
    _check_rate("token deletion p", p)
    x = torch.as_tensor(list(ids), dtype=torch.long)
    drop = _uniform(len(x), generator) < p
    if keep:
        drop &= ~torch.isin(x, torch.tensor(sorted(keep), dtype=torch.long))
    return x[~drop].tolist()


def poisson_span_lengths(
    budget: int, poisson_lambda: float = 3.0, generator: torch.Generator | None = None
) -> list[int]:
    """Span lengths l_j ~ Poisson(λ) drawn until they sum to at least ``budget``; the last is cut so
    the sum is exactly ``budget``. 0-length spans are kept (they become insertions)."""
    if budget < 0 or poisson_lambda <= 0:
        raise ConfigError(f"budget={budget} must be >= 0 and poisson_lambda={poisson_lambda} positive")
    lengths: list[int] = []
    total = 0
    rate = torch.tensor([poisson_lambda], dtype=torch.float)
    while total < budget:
        draws = torch.poisson(rate.expand(max(8, budget)), generator=generator).long().tolist()
        for length in draws:
            lengths.append(min(length, budget - total))
            total += lengths[-1]
            if total >= budget:
                break
    return lengths


def text_infilling(
    ids: Sequence[int],
    mask_id: int,
    ratio: float = 0.3,
    poisson_lambda: float = 3.0,
    generator: torch.Generator | None = None,
    return_spans: bool = False,
) -> Ids | tuple[Ids, list[tuple[int, int]]]:
    """BART's text infilling (module docstring): Poisson(λ) spans covering round(ratio * n) tokens,
    each replaced by one ``mask_id``. With ``return_spans``, also the (start, length) of each span
    in ``ids`` (a 0-length span at ``start`` is an insertion before token ``start``)."""
    _check_rate("text infilling ratio", ratio)
    x = list(ids)
    n = len(x)
    budget = round(ratio * n)
    lengths = poisson_span_lengths(budget, poisson_lambda, generator) if budget else []
    # Place the spans: each picks one of the n - budget + 1 gaps around the kept tokens, in a random order.
    kept = n - budget
    gaps = torch.randint(0, kept + 1, (len(lengths),), generator=generator).tolist()
    order = torch.randperm(len(lengths), generator=generator).tolist()
    by_gap: dict[int, list[int]] = {}
    for j, gap in zip(order, sorted(gaps)):
        by_gap.setdefault(gap, []).append(lengths[j])
    out: Ids = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for gap in range(kept + 1):
        for length in by_gap.get(gap, []):
            spans.append((pos, length))
            out.append(mask_id)
            pos += length
        if gap < kept:
            out.append(x[pos])
            pos += 1
    return (out, spans) if return_spans else out


def sentence_permutation(sentences: Sequence[Sequence[int]], generator: torch.Generator | None = None) -> Ids:
    """The sentences (token lists) in a uniformly random order, concatenated."""
    order = torch.randperm(len(sentences), generator=generator).tolist()
    return [t for i in order for t in sentences[i]]


def document_rotation(ids: Sequence[int], generator: torch.Generator | None = None) -> Ids:
    """The document rotated to start at a uniformly chosen token."""
    x = list(ids)
    if not x:
        return x
    k = int(torch.randint(0, len(x), (1,), generator=generator))
    return x[k:] + x[:k]


@dataclass
class BartNoiseConfig:
    """Which of BART's transformations to apply, and how strongly (defaults: BART-large's)."""

    permute_sentences: bool = True
    token_mask: float = 0.0  # p of token masking
    token_delete: float = 0.0  # p of token deletion
    infill_ratio: float = 0.3  # fraction of tokens covered by text-infilling spans (0: off)
    poisson_lambda: float = 3.0
    rotate: bool = False
    add_eos: bool = True


def bart_noise(
    sentences: Sequence[Sequence[int]],
    mask_id: int,
    eos_id: int | None,
    config: BartNoiseConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Ids, Ids]:
    """(input_ids, labels) for BART: the noised document and the original (sentences in order),
    each ending in </s> when ``config.add_eos``. Order: permutation, masking, deletion, infilling,
    rotation."""
    cfg = config or BartNoiseConfig()
    original = [t for s in sentences for t in s]
    if not original:
        raise ConfigError("an empty document cannot be noised: drop it before pretraining")
    x = sentence_permutation(sentences, generator) if cfg.permute_sentences else list(original)
    if cfg.token_mask:
        x = token_masking(x, mask_id, cfg.token_mask, generator)
    if cfg.token_delete:
        x = token_deletion(x, cfg.token_delete, generator)
    if cfg.infill_ratio:
        x = text_infilling(x, mask_id, cfg.infill_ratio, cfg.poisson_lambda, generator)
    if cfg.rotate:
        x = document_rotation(x, generator)
    labels = list(original)
    if cfg.add_eos and eos_id is not None:
        x, labels = x + [eos_id], labels + [eos_id]
    return x, labels


# ------------------------------------------------------------------------------------------
# Sentences and ROUGE-1 (rouge-score's tokenization).

_SENTENCE_END = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9À-Þ])")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: a cut after ``.``, ``!`` or ``?`` and whitespace before a capital or
    digit, and at each line break (a paragraph is a sentence boundary)."""
    out = []
    for line in text.split("\n"):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            out.append(line[start : m.end(1)].strip())
            start = m.end()
        out.append(line[start:].strip())
    return [s for s in out if s]


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenization (no stemming): lower-case, runs of [a-z0-9]."""
    return _ROUGE_TOKEN.findall(text.lower())


def rouge1_f1(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-1 F1 of two token lists: unigram overlap (clipped counts) as precision and recall."""
    if not candidate or not reference:
        return 0.0
    overlap = sum((Counter(candidate) & Counter(reference)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(candidate), overlap / len(reference)
    return 2 * precision * recall / (precision + recall)


SELECTION = ("independent", "sequential")


def select_gap_sentences(sentences: Sequence[str], gap_ratio: float = 0.3, selection: str = "independent") -> list[int]:
    """Indices (ascending) of the m = max(1, round(gap_ratio * n)) principal sentences (module docstring).

    Ties go to the earlier sentence. A document of one sentence gives [0].
    """
    if selection not in SELECTION:
        raise ConfigError(f"selection={selection!r}: use one of {SELECTION}")
    _check_rate("gap_ratio", gap_ratio)
    n = len(sentences)
    if n == 0:
        raise ConfigError("a document without sentences has no gap sentences: drop it")
    m = min(n, max(1, round(gap_ratio * n)))
    tokens = [rouge_tokens(s) for s in sentences]
    if selection == "independent":
        scores = []
        for i in range(n):
            rest = [t for j in range(n) if j != i for t in tokens[j]]
            scores.append(rouge1_f1(tokens[i], rest))
        return sorted(sorted(range(n), key=lambda i: (-scores[i], i))[:m])
    chosen: list[int] = []
    for _ in range(m):
        best, best_score = -1, -1.0
        for i in range(n):
            if i in chosen:
                continue
            picked = set(chosen) | {i}
            cand = [t for j in sorted(picked) for t in tokens[j]]
            rest = [t for j in range(n) if j not in picked for t in tokens[j]]
            score = rouge1_f1(cand, rest)
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return sorted(chosen)


@dataclass
class GapSentenceConfig:
    """PEGASUS gap-sentence generation (defaults: PEGASUS-large's Ind-Orig, 30%, no MLM)."""

    gap_ratio: float = 0.3
    selection: str = "independent"  # | "sequential"
    mask_token: str = "<mask_1>"  # [MASK1]: one per removed sentence
    token_mask_rate: float = 0.0  # BERT-style masking of the remaining tokens with [MASK2]
    add_eos: bool = True


def gap_sentence_texts(sentences: Sequence[str], config: GapSentenceConfig | None = None) -> tuple[str, str, list[int]]:
    """(input text, target text, selected indices): the selected sentences replaced by
    ``mask_token`` in the input, and joined in document order as the target."""
    cfg = config or GapSentenceConfig()
    chosen = select_gap_sentences(sentences, cfg.gap_ratio, cfg.selection)
    picked = set(chosen)
    source = " ".join(cfg.mask_token if i in picked else s for i, s in enumerate(sentences))
    target = " ".join(sentences[i] for i in chosen)
    return source, target, chosen


def gap_sentence_example(
    sentences: Sequence[str],
    encode: Callable[[str], Sequence[int]],
    eos_id: int | None,
    config: GapSentenceConfig | None = None,
    token_mask_id: int | None = None,
    keep_ids: frozenset = frozenset(),
    generator: torch.Generator | None = None,
) -> tuple[Ids, Ids]:
    """(input_ids, labels) of PEGASUS GSG; ``encode`` is the tokenizer's (without </s>, e.g.
    ``lambda s: tok.encode(s, add_eos=False)``). With ``config.token_mask_rate`` the input's other
    tokens (not ``keep_ids``, e.g. [MASK1]) become ``token_mask_id`` with that probability."""
    cfg = config or GapSentenceConfig()
    source, target, _ = gap_sentence_texts(sentences, cfg)
    x, y = list(encode(source)), list(encode(target))
    if cfg.token_mask_rate:
        if token_mask_id is None:
            raise ConfigError("token_mask_rate needs token_mask_id (the tokenizer's <mask_2>)")
        x = token_masking(x, token_mask_id, cfg.token_mask_rate, generator, keep=keep_ids)
    if cfg.add_eos and eos_id is not None:
        x, y = x + [eos_id], y + [eos_id]
    return x, y
