"""The extractive reader: BERT's QA head picks the answer span out of the retrieved passages.

BERT for SQuAD (Devlin et al. 2018, arXiv:1810.04805, §4.2): the question and a passage go in as
one pair ``[CLS] question [SEP] passage [SEP]``; the ``qa`` head gives every token a start and an
end logit, and the answer is the span of passage tokens that maximises

    score(i, j) = start_i + end_j,      i <= j < i + max_answer_tokens

A passage longer than the context is read in windows of ``max_length`` tokens that overlap by
``stride`` tokens. Trained with SQuAD 2.0's convention (Rajpurkar et al. 2018, arXiv:1806.03822),
a window that holds no answer points both targets at [CLS], so ``null = start_0 + end_0`` is the
model's "no answer here" score: the reader abstains when the best span scores below the null of
its window (``use_null``), and, like the generative reader, when the best retrieval score is
below the tuned threshold (:func:`genlab.rag.answer.should_abstain`).

Several passages: every window of every passage is scored and the best span wins; its passage
is the one the answer cites. :func:`best_span` is the vectorised search, :func:`best_span_reference`
the plain double loop it is tested equal to.

Axes: W windows, T tokens of a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.core.errors import ConfigError
from genlab.models.outputs import aux_metric
from genlab.rag.answer import NOT_IN_KB, Answer, Citation, should_abstain
from genlab.rag.types import Chunk, Hit

NO_OFFSET = (-1, -1)  # a token that is not passage text: [CLS], the question, [SEP], padding


@dataclass
class Windows:
    """Tokenised (question, passage window) pairs, unpadded: one row per window."""

    input_ids: list[list[int]] = field(default_factory=list)
    type_ids: list[list[int]] = field(default_factory=list)
    offsets: list[list[tuple[int, int]]] = field(default_factory=list)  # chars of the passage per token
    passage: list[int] = field(default_factory=list)  # which passage each window reads

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Rows as a padded batch: ``input_ids``, ``attention_mask``, ``token_type_ids`` (W, T) and
        ``context_mask`` (W, T), True on passage tokens."""
        width = max(len(self.input_ids[r]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        context = torch.zeros((len(rows), width), dtype=torch.bool)
        for k, r in enumerate(rows):
            n = len(self.input_ids[r])
            ids[k, :n] = torch.tensor(self.input_ids[r])
            types[k, :n] = torch.tensor(self.type_ids[r])
            mask[k, :n] = 1
            context[k, :n] = torch.tensor([o != NO_OFFSET for o in self.offsets[r]])
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "context_mask": context}


def windows(tok, question: str, passages: Sequence[str], max_length: int = 384, stride: int = 128,
            min_room: int = 16) -> Windows:  # fmt: skip
    """``[CLS] question [SEP] window [SEP]`` rows for every window of every passage, with each
    token's character offsets in its passage; windows overlap by ``stride`` tokens (at most half
    a window). A question that leaves fewer than ``min_room`` passage tokens in ``max_length`` is a
    one-line ConfigError."""
    hf = tok.hf
    q_ids = hf.encode(question, add_special_tokens=False).ids
    room = max_length - len(q_ids) - 3
    if room < min_room:
        raise ConfigError(
            f"the question takes {len(q_ids)} tokens: with [CLS] and two [SEP] it leaves {max(room, 0)} of the "
            f"reader's {max_length} for the passage (at least {min_room} needed): shorten the question"
        )
    stride = max(0, min(stride, room // 2))
    out = Windows()
    head = [tok.cls_id, *q_ids, tok.sep_id]
    for p, enc in enumerate(hf.encode_batch(list(passages), add_special_tokens=False)):
        ids, offs = enc.ids, [tuple(o) for o in enc.offsets]
        start = 0
        while True:
            w_ids, w_offs = ids[start : start + room], offs[start : start + room]
            out.input_ids.append([*head, *w_ids, tok.sep_id])
            out.type_ids.append([0] * len(head) + [1] * (len(w_ids) + 1))
            out.offsets.append([NO_OFFSET] * len(head) + w_offs + [NO_OFFSET])
            out.passage.append(p)
            if start + room >= len(ids):
                break
            start += room - stride
    return out


def span_targets(w: Windows, answers: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Start and end token of each window's answer (``answers[p]`` = the character span in passage
    p, ``(-1, -1)`` for none); 0 ([CLS]) where the window does not hold the whole answer."""
    starts, ends = [], []
    for offs, p in zip(w.offsets, w.passage):
        a, b = answers[p]
        s = next((i for i, o in enumerate(offs) if o != NO_OFFSET and o[0] <= a < o[1]), None)
        e = next((i for i, o in enumerate(offs) if o != NO_OFFSET and o[0] < b <= o[1]), None)
        ok = a >= 0 and s is not None and e is not None and s <= e
        starts.append(s if ok else 0)
        ends.append(e if ok else 0)
    return starts, ends


def span_extraction_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """BERT's SQuAD loss: the mean of the start and end cross-entropies over each window's real
    tokens (``start_positions``, ``end_positions``; 0 = [CLS] = no answer in this window); an MoE
    encoder's balancing loss is passed on as ``aux_loss``."""
    out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], heads=["qa"])
    pad = batch["attention_mask"] == 0
    start = out.start_logits.float().masked_fill(pad, float("-inf"))  # (W, T)
    end = out.end_logits.float().masked_fill(pad, float("-inf"))  # (W, T)
    loss = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
    hit = (start.argmax(-1) == batch["start_positions"]) & (end.argmax(-1) == batch["end_positions"])
    return loss, {"train_span_accuracy": hit.float().mean().item(), **aux_metric(out)}


def best_span(start: torch.Tensor, end: torch.Tensor, context: torch.Tensor,
              max_answer_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The best (i, j) of each window: start (W, T), end (W, T), context (W, T) bool -> start
    index, end index and score (W,) each; score -inf for a window without passage tokens."""
    W, T = start.shape
    scores = start[:, :, None] + end[:, None, :]  # (W, T, T): [w, i, j] = start_i + end_j
    i = torch.arange(T, device=start.device)
    band = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < max_answer_tokens)  # (T, T): i <= j < i + L
    ok = band[None] & context[:, :, None] & context[:, None, :]  # (W, T, T)
    flat = scores.masked_fill(~ok, float("-inf")).view(W, T * T)
    best, at = flat.max(-1)
    return at // T, at % T, best


def best_span_reference(start: torch.Tensor, end: torch.Tensor, context: torch.Tensor,
                        max_answer_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`best_span` as the plain double loop over (i, j) (first best on ties, row-major)."""
    W, T = start.shape
    si, sj, sb = torch.zeros(W, dtype=torch.long), torch.zeros(W, dtype=torch.long), torch.full((W,), float("-inf"))
    for w in range(W):
        for i in range(T):
            for j in range(i, min(T, i + max_answer_tokens)):
                if context[w, i] and context[w, j] and float(start[w, i] + end[w, j]) > float(sb[w]):
                    si[w], sj[w], sb[w] = i, j, start[w, i] + end[w, j]
    return si, sj, sb


@dataclass
class Span:
    """An extracted answer: ``text = passages[passage][start:end]``; ``score`` = start + end logit,
    ``null`` = the [CLS] score of its window (no answer)."""

    text: str
    passage: int
    start: int
    end: int
    score: float
    null: float


class ExtractiveReader:
    """A Bert with the ``qa`` head and its WordPiece tokenizer, reading spans out of passages."""

    def __init__(self, model, tokenizer, max_length: int = 384, stride: int = 128, max_answer_tokens: int = 48,
                 batch_size: int = 16, use_null: bool = True) -> None:  # fmt: skip
        if "qa" not in getattr(getattr(model, "config", None), "heads", ()):
            raise ConfigError(
                "the extractive reader needs a bert run with the 'qa' head (train one: genlab train rag/reader)"
            )
        self.model, self.tok = model.eval(), tokenizer
        self.max_length = min(max_length, model.config.block_size)
        self.stride, self.max_answer_tokens, self.batch_size = stride, max_answer_tokens, batch_size
        self.use_null = use_null

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best", **options) -> ExtractiveReader:
        from genlab.runs import load_bert_run

        model, tok, config = load_bert_run(run_dir, checkpoint)
        data = config.get("data") or {}
        for key in ("max_length", "stride", "max_answer_tokens"):  # as the run was trained
            if key in data:
                options.setdefault(key, data[key])
        return cls(model, tok, **options)

    @torch.no_grad()
    def spans(self, question: str, passages: Sequence[str]) -> list[Span]:
        """The best span of each passage (over its windows), best first."""
        if not question.strip():
            raise ConfigError("the question is empty: ask something")
        w = windows(self.tok, question, passages, self.max_length, self.stride)
        device = next(self.model.parameters()).device
        best: dict[int, Span] = {}
        for lo in range(0, len(w), self.batch_size):
            rows = list(range(lo, min(lo + self.batch_size, len(w))))
            b = {k: v.to(device) for k, v in w.batch(rows, self.tok.pad_id).items()}
            out = self.model(b["input_ids"], b["attention_mask"], b["token_type_ids"], heads=["qa"])
            start, end = out.start_logits.float(), out.end_logits.float()  # (W, T)
            si, sj, score = best_span(start, end, b["context_mask"], self.max_answer_tokens)
            null = start[:, 0] + end[:, 0]
            for k, r in enumerate(rows):
                if score[k] == float("-inf"):
                    continue
                p = w.passage[r]
                a, z = w.offsets[r][int(si[k])][0], w.offsets[r][int(sj[k])][1]
                span = Span(passages[p][a:z], p, a, z, float(score[k]), float(null[k]))
                if p not in best or span.score > best[p].score:
                    best[p] = span
        return sorted(best.values(), key=lambda s: -s.score)

    def answer(self, question: str, hits: Sequence[Hit | Chunk], threshold: float | None = None) -> Answer:
        """The best span over ``hits``, citing its passage: ``"<span> [n]"``. :data:`NOT_IN_KB` below
        the retrieval threshold (Hits only), or when the best span scores below its window's null."""
        chunks = [h.chunk if isinstance(h, Hit) else h for h in hits]
        scored = [h for h in hits if isinstance(h, Hit)]
        top = max((h.score for h in scored), default=None)
        if not chunks or (scored and should_abstain(scored, threshold)):
            return Answer(NOT_IN_KB, chunks=chunks, abstained=True, score=top)
        found = self.spans(question, [c.text for c in chunks])
        if not found or (self.use_null and found[0].score < found[0].null):
            return Answer(NOT_IN_KB, chunks=chunks, abstained=True, score=top)
        s = found[0]
        return Answer(f"{s.text} [{s.passage + 1}]", [Citation(s.passage + 1, chunks[s.passage])], [], chunks,
                      False, top)  # fmt: skip


__all__ = [
    "ExtractiveReader",
    "Span",
    "Windows",
    "best_span",
    "best_span_reference",
    "span_extraction_loss",
    "span_targets",
    "windows",
]
