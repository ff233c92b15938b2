"""Masked language modelling (BERT, RoBERTa, SpanBERT) and the sentence-pair tasks (NSP, SOP).

Axes: B batch, T time (tokens), V vocabulary, D hidden size, N selected (labelled) positions.

Masked LM (Devlin et al. 2018, arXiv:1810.04805). A set M of positions is selected, 15% of the
maskable tokens of each sequence, and the model predicts the original token at each one::

    L = -(1/|M|) sum_{i in M} log p(x_i | x~)

where x~ is x with each selected token, independently,
    - replaced by [MASK]             with probability 0.8,
    - replaced by a random token     with probability 0.1 (never a special token),
    - left unchanged                 with probability 0.1,
so that the encoder cannot tell which visible tokens it will be asked about, and the pretraining
input looks more like the fine-tuning input, which has no [MASK]. Special tokens ([CLS], [SEP],
[PAD], [MASK], ...) and padding are never selected.

Selection is a fixed count per sequence: exactly round(rate * n) of the n maskable tokens
(Python's round, half to even; at least one when n > 0), chosen uniformly without replacement.
That is what BERT's ``create_pretraining_data.py`` does; Hugging Face's collator instead flips an
independent coin per token, which gives the same rate on average but a varying count. A fixed
count keeps the number of labelled tokens per batch, and so the gradient noise, steady.

Dynamic masking (RoBERTa, Liu et al. 2019, arXiv:1907.11692) is :func:`mask_tokens` called at
batch time, with a seeded ``torch.Generator`` so a run is reproducible: every epoch then sees a
fresh mask of the same text instead of BERT's 10 static copies.

Span masking (SpanBERT, Joshi et al. 2019, arXiv:1907.10529). Whole contiguous spans are masked
until the same 15% budget is spent. Span lengths follow a geometric distribution truncated at
l_max = 10 and renormalised::

    P(l) = p (1 - p)^(l - 1) / (1 - (1 - p)^l_max),    l = 1 .. l_max,   p = 0.2

whose mean is 3.8 tokens, the figure in the paper. The 80/10/10 rule is applied per span, as in
SpanBERT: all the tokens of a span become [MASK], or all become random tokens, or all stay.
The span boundary objective (SBO) predicts each token x_i of a span (s, e) from the encoder's
outputs at the two boundary tokens x_{s-1}, x_{e+1} and a position embedding p_{i-s}::

    y_i = f(h_{s-1}, h_{e+1}, p_{i-s}),   L_SBO = -log p(x_i | y_i)

:func:`span_mask` returns, for each masked position, (s - 1, e + 1, i - s); pass them to
:func:`gather_span_boundaries` to collect h_{s-1}, h_{e+1} and the offset for the SBO head.

Next sentence prediction (BERT): [CLS] A [SEP] B [SEP] where B is the text that follows A
(label 0, "is next") or text from another document (label 1, "not next"). Sentence order
prediction (ALBERT, Lan et al. 2019, arXiv:1909.11942): A and B are always consecutive and the
label says whether they are in order (0) or swapped (1), so topic cues cannot solve the task;
only coherence can. The label conventions are those of Hugging Face's ``BertForPreTraining``
(``next_sentence_label``) and ``AlbertForPreTraining`` (``sentence_order_label``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


# --- token masking (BERT, RoBERTa) ---------------------------------------------------------


def _check_replace(replace: Sequence[float]) -> tuple[float, float, float]:
    if len(replace) != 3 or min(replace) < 0 or abs(sum(replace) - 1.0) > 1e-6:
        raise ValueError(f"replace={tuple(replace)} must be 3 probabilities (mask, random, keep) that sum to 1")
    return float(replace[0]), float(replace[1]), float(replace[2])


def _protected(
    ids: torch.Tensor,
    mask_id: int,
    special_ids: Iterable[int],
    special_mask: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """(B, T) bool, True where a position may never be selected: special tokens, [MASK], padding."""
    never = torch.tensor([mask_id, *special_ids], dtype=ids.dtype, device=ids.device)
    protected = torch.isin(ids, never)
    if special_mask is not None:
        protected |= special_mask.reshape(ids.shape).to(ids.device, torch.bool)
    if attention_mask is not None:
        protected |= attention_mask.reshape(ids.shape).to(ids.device) == 0
    return protected


def _random_candidates(
    vocab_size: int, mask_id: int, special_ids: Iterable[int], exclude_ids: Iterable[int], device
) -> torch.Tensor:
    """The ids a random replacement may take: the vocabulary minus [MASK], special and excluded ids."""
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is outside the vocabulary of {vocab_size} tokens")
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
    banned = [i for i in (mask_id, *special_ids, *exclude_ids) if 0 <= i < vocab_size]
    allowed[torch.tensor(banned, dtype=torch.long, device=device)] = False
    return allowed.nonzero().squeeze(1)


def _budget(n_maskable: torch.Tensor, rate: float) -> torch.Tensor:
    """round(rate * n), half to even like Python's round, at least 1 when n > 0, at most n."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate={rate} must be in (0, 1]; BERT uses 0.15")
    k = torch.round(n_maskable.double() * rate).long()
    return torch.minimum(torch.where(n_maskable > 0, k.clamp(min=1), k), n_maskable)


def mask_tokens(
    ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    special_mask: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    rate: float = 0.15,
    generator: torch.Generator | None = None,
    replace: Sequence[float] = (0.8, 0.1, 0.1),
    exclude_ids: Iterable[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of ids (..., T) -> (inputs, labels), both (..., T); labels = -100 where not selected.

    Exactly round(rate * n) of the n maskable positions of each sequence are selected (at least
    one when n > 0). A position is maskable unless its id is ``mask_id`` or in ``special_ids``,
    ``special_mask`` is True there, or ``attention_mask`` is 0 there. Each selected token becomes
    [MASK], a random token or stays, with the probabilities ``replace``. Random tokens are drawn
    uniformly from the vocabulary minus ``mask_id``, ``special_ids`` and ``exclude_ids`` (pass the
    special ids there when you mark special positions with ``special_mask`` only). ``generator``
    must live on the device of ``ids``.
    """
    p_mask, p_rand, _ = _check_replace(replace)
    special_ids, exclude_ids = list(special_ids), list(exclude_ids)
    shape = ids.shape
    ids = ids.reshape(-1, shape[-1])  # (B, T)
    protected = _protected(ids, mask_id, special_ids, special_mask, attention_mask)
    k = _budget((~protected).sum(1), rate)  # (B,)

    # Uniform selection without replacement: rank random scores, protected positions last.
    scores = torch.rand(ids.shape, generator=generator, device=ids.device)
    scores = scores.masked_fill(protected, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position's score
    selected = ranks < k[:, None]

    # 80/10/10, one independent draw per token.
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    to_mask = selected & (u < p_mask)
    to_rand = selected & (u >= p_mask) & (u < p_mask + p_rand)
    candidates = _random_candidates(vocab_size, mask_id, special_ids, exclude_ids, ids.device)
    if candidates.numel() == 0:
        if p_rand > 0:
            raise ValueError("no token is left for random replacement: every id is special or excluded")
        candidates = ids.new_tensor([mask_id])
    pick = torch.randint(candidates.numel(), ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_rand, candidates[pick].to(ids.dtype), inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs.reshape(shape), labels.reshape(shape)


# --- span masking (SpanBERT) -----------------------------------------------------------------


def span_length_probs(p: float = 0.2, max_span: int = 10) -> torch.Tensor:
    """(max_span,) probabilities of span lengths 1 .. max_span: Geometric(p) truncated and renormalised."""
    if not 0.0 < p <= 1.0 or max_span < 1:
        raise ValueError(f"need 0 < p <= 1 and max_span >= 1, got p={p}, max_span={max_span}")
    lengths = torch.arange(1, max_span + 1, dtype=torch.float64)
    probs = p * (1 - p) ** (lengths - 1)
    return probs / probs.sum()


def span_mask(
    ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    special_mask: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    rate: float = 0.15,
    p: float = 0.2,
    max_span: int = 10,
    generator: torch.Generator | None = None,
    replace: Sequence[float] = (0.8, 0.1, 0.1),
    exclude_ids: Iterable[int] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SpanBERT masking of ids (..., T) -> (inputs, labels, boundaries (..., T, 3)).

    Maskable positions, budget (round(rate * n) per sequence) and random tokens are as in
    :func:`mask_tokens`. Spans are placed one at a time in each sequence (all sequences of the
    batch at once): a length from :func:`span_length_probs`, then a start drawn uniformly among
    the places where the whole span fits. A span

    - lies on maskable positions only (never across a special token or padding),
    - has a real (non-padding) token just left and just right of it: its boundary tokens,
      which may be [CLS] or [SEP] but are never masked, since spans never touch each other,
    - is cut to the remaining budget if longer, so each sequence gets exactly the budget
      (as SpanBERT's code does), unless no place is left for even one token.

    If no place fits the drawn length, the span is shortened until one does. The 80/10/10
    decision is made once per span. ``boundaries[..., :]`` is (s - 1, e + 1, i - s) at each masked
    position i of a span s..e (inclusive) and -1 elsewhere. ``generator`` must live on the
    device of ``ids``.
    """
    p_mask, p_rand, _ = _check_replace(replace)
    special_ids, exclude_ids = list(special_ids), list(exclude_ids)
    shape, device = ids.shape, ids.device
    ids = ids.reshape(-1, shape[-1])  # (B, T)
    B, T = ids.shape
    protected = _protected(ids, mask_id, special_ids, special_mask, attention_mask)
    real = torch.ones_like(ids, dtype=torch.bool)
    if attention_mask is not None:
        real = attention_mask.reshape(B, T).to(device) != 0
    remaining = _budget((~protected).sum(1), rate)  # (B,) tokens still to mask
    probs = span_length_probs(p, max_span).float().to(device)
    candidates = _random_candidates(vocab_size, mask_id, special_ids, exclude_ids, device)
    if candidates.numel() == 0:
        if p_rand > 0:
            raise ValueError("no token is left for random replacement: every id is special or excluded")
        candidates = ids.new_tensor([mask_id])

    # A position can be in a span if it is maskable and both its neighbours are real tokens.
    left_real = F.pad(real[:, :-1], (1, 0), value=False)
    right_real = F.pad(real[:, 1:], (0, 1), value=False)
    avail = ~protected & left_real & right_real  # (B, T)
    pos = torch.arange(T, device=device)[None]  # (1, T)
    # Per position: the first and the end (exclusive) of its span, -1 outside spans, and the
    # span's uniform draw for the 80/10/10 decision.
    first_at = torch.full_like(ids, -1)
    stop_at = torch.full_like(ids, -1)
    kind_at = torch.ones((B, T), device=device)
    active = remaining > 0
    while bool(active.any()):
        # One span per active sequence: its length, cut to the budget left.
        length = torch.multinomial(probs, B, replacement=True, generator=generator) + 1  # (B,)
        length = torch.minimum(length, remaining)
        count = F.pad(avail.long().cumsum(1), (1, 0))  # (B, T + 1) count[:, i] = avail[:, :i].sum()
        while True:
            end = pos + length[:, None]  # (B, T) exclusive end of a span starting at each position
            window = count.gather(1, end.clamp(max=T)) - count[:, :T]
            valid = (end <= T) & (window == length[:, None]) & active[:, None]  # (B, T) possible starts
            shrink = active & ~valid.any(1) & (length > 1)
            if not bool(shrink.any()):
                break
            length = length - shrink.long()
        placed = valid.any(1)  # (B,) active rows with room for a span; the others are done
        scores = torch.rand((B, T), generator=generator, device=device).masked_fill(~valid, -1.0)
        start = scores.argmax(1)  # (B,) uniform among the valid starts
        first, stop = start[:, None], (start + length)[:, None]
        in_span = (pos >= first) & (pos < stop) & placed[:, None]  # (B, T)
        avail &= ~((pos >= first - 1) & (pos <= stop) & placed[:, None])  # the span and its boundaries
        first_at = torch.where(in_span, first, first_at)
        stop_at = torch.where(in_span, stop, stop_at)
        kind = torch.rand((B, 1), generator=generator, device=device)  # 80/10/10, once per span
        kind_at = torch.where(in_span, kind, kind_at)
        remaining = remaining - length * placed
        active = placed & (remaining > 0)

    masked = first_at >= 0
    labels = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
    random_tokens = candidates[torch.randint(candidates.numel(), (B, T), generator=generator, device=device)].to(
        ids.dtype
    )
    inputs = torch.where(masked & (kind_at < p_mask), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(masked & (kind_at >= p_mask) & (kind_at < p_mask + p_rand), random_tokens, inputs)
    boundaries = torch.stack([first_at - 1, stop_at, pos - first_at], -1)  # (B, T, 3)
    boundaries = boundaries.masked_fill(~masked[..., None], -1)
    return inputs.reshape(shape), labels.reshape(shape), boundaries.reshape(*shape, 3)


def gather_span_boundaries(
    hidden: torch.Tensor, boundaries: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """hidden (B, T, D), boundaries (B, T, 3) -> (h_left (N, D), h_right (N, D), offset (N,)).

    The N masked positions are taken in row-major order, the order of ``labels[labels != -100]``,
    so ``masked_lm_loss(sbo_head(h_left, h_right, offset), labels[labels != -100])`` is the SBO.
    """
    selected = boundaries[..., 2] >= 0  # (B, T)
    rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None].expand(selected.shape)[selected]  # (N,)
    chosen = boundaries[selected]  # (N, 3)
    return hidden[rows, chosen[:, 0]], hidden[rows, chosen[:, 1]], chosen[:, 2]


# --- the loss ------------------------------------------------------------------------------


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """logits (..., V), labels (...) with -100 where unlabelled -> (mean CE over labelled positions, metrics).

    metrics: ``mlm_accuracy`` (argmax == label over labelled positions) and ``mlm_tokens`` (their
    count). With no labelled position the loss is 0 (still attached to the graph).
    """
    logits = logits.reshape(-1, logits.shape[-1])  # (B * T, V)
    labels = labels.reshape(-1)
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    if n == 0:
        return logits.sum() * 0.0, {"mlm_accuracy": 0.0, "mlm_tokens": 0}
    chosen = logits[selected].float()  # (N, V)
    target = labels[selected]
    loss = F.cross_entropy(chosen, target)
    accuracy = (chosen.argmax(-1) == target).float().mean().item()
    return loss, {"mlm_accuracy": accuracy, "mlm_tokens": n}


# --- sentence pairs (NSP, SOP) ---------------------------------------------------------------


@dataclass
class SentencePair:
    """One NSP or SOP example: ``input_ids`` = [CLS] a [SEP] b [SEP], a and b in input order."""

    a: list[int]
    b: list[int]
    input_ids: list[int]
    token_type_ids: list[int]  # 0 for [CLS] a [SEP], 1 for b [SEP]
    label: int


def _rng(rng: int | random.Random) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


def _pair(a: list[int], b: list[int], label: int, cls_id: int, sep_id: int) -> SentencePair:
    return SentencePair(
        a=a,
        b=b,
        input_ids=[cls_id, *a, sep_id, *b, sep_id],
        token_type_ids=[0] * (len(a) + 2) + [1] * (len(b) + 1),
        label=label,
    )


def _split_chunks(
    documents: Sequence[Sequence[Sequence[int]]], budget: int, rng: random.Random
) -> list[tuple[int, list[int], list[int]]]:
    """(document index, A, B): consecutive sentences packed greedily into chunks of <= budget tokens,
    each chunk of two or more sentences cut at a random sentence boundary into A and B."""
    out = []
    for d, doc in enumerate(documents):
        chunks: list[list[Sequence[int]]] = [[]]
        length = 0
        for sentence in doc:
            if not sentence:
                continue
            if chunks[-1] and length + len(sentence) > budget:
                chunks.append([])
                length = 0
            chunks[-1].append(sentence)
            length += len(sentence)
        for chunk in chunks:
            if len(chunk) < 2:
                continue  # one sentence cannot be split into two segments
            cut = rng.randint(1, len(chunk) - 1)
            a = [t for s in chunk[:cut] for t in s]
            b = [t for s in chunk[cut:] for t in s]
            out.append((d, a, b))
    return out


def _balanced_labels(n: int, rng: random.Random) -> list[int]:
    """n labels, half 0 and half 1 (one more 0 when n is odd), in random order."""
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    return labels


def sentence_order_pairs(
    documents: Sequence[Sequence[Sequence[int]]],
    *,
    cls_id: int,
    sep_id: int,
    max_len: int = 128,
    rng: int | random.Random = 0,
) -> list[SentencePair]:
    """ALBERT sentence-order examples from documents (lists of sentences, each a list of token ids).

    Each document is packed greedily into chunks of consecutive sentences of at most
    ``max_len - 3`` tokens; each chunk of two or more sentences is cut at a random sentence
    boundary into consecutive segments A, B. Half the pairs (exactly, in random order) are
    swapped: label 0 = [CLS] A [SEP] B [SEP] (in order), 1 = [CLS] B [SEP] A [SEP] (swapped).
    """
    rng = _rng(rng)
    splits = _split_chunks(documents, max_len - 3, rng)
    labels = _balanced_labels(len(splits), rng)
    return [
        _pair(b, a, 1, cls_id, sep_id) if y else _pair(a, b, 0, cls_id, sep_id) for (_, a, b), y in zip(splits, labels)
    ]


def next_sentence_pairs(
    documents: Sequence[Sequence[Sequence[int]]],
    *,
    cls_id: int,
    sep_id: int,
    max_len: int = 128,
    rng: int | random.Random = 0,
) -> list[SentencePair]:
    """BERT next-sentence examples from documents (lists of sentences, each a list of token ids).

    Segments A, B as in :func:`sentence_order_pairs`. For half the pairs (exactly, in random
    order) B is replaced by consecutive sentences of another document, from a random sentence on,
    filling the room A leaves (cut to fit): label 0 = B is next, 1 = B is random.
    """
    rng = _rng(rng)
    budget = max_len - 3
    sources = [d for d, doc in enumerate(documents) if any(doc)]
    if len(sources) < 2:
        raise ValueError("next-sentence pairs need at least two non-empty documents to draw random segments from")
    splits = _split_chunks(documents, budget, rng)
    labels = _balanced_labels(len(splits), rng)
    pairs = []
    for (d, a, b), y in zip(splits, labels):
        if y:
            other = [s for s in documents[rng.choice([i for i in sources if i != d])] if s]
            b = []
            for sentence in other[rng.randrange(len(other)) :]:
                if b and len(a) + len(b) + len(sentence) > budget:
                    break
                b.extend(sentence)
            b = b[: max(budget - len(a), 1)]
        pairs.append(_pair(a, b, y, cls_id, sep_id))
    return pairs


def collate_pairs(pairs: Sequence[SentencePair], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad sentence pairs into a batch: input_ids, token_type_ids, attention_mask (B, T), labels (B,)."""
    T = max(len(p.input_ids) for p in pairs)
    input_ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(pairs), T), dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), T), dtype=torch.long)
    for i, pair in enumerate(pairs):
        n = len(pair.input_ids)
        input_ids[i, :n] = torch.tensor(pair.input_ids)
        token_type_ids[i, :n] = torch.tensor(pair.token_type_ids)
        attention_mask[i, :n] = 1
    labels = torch.tensor([p.label for p in pairs], dtype=torch.long)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "labels": labels,
    }
