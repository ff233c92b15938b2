"""The extractive reader: windows and their offsets, span targets, the span search, and a reader
that learnt one answer reading it back out of several passages and citing the right one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.models.bert import Bert
from genlab.rag.answer import NOT_IN_KB
from genlab.rag.reader import (
    NO_OFFSET,
    ExtractiveReader,
    best_span,
    best_span_reference,
    span_extraction_loss,
    span_targets,
    windows,
)
from genlab.rag.types import Chunk, Hit
from genlab.tokenizers import WordPieceTokenizer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
QUESTION = "Who is the king of Denmark?"
PASSAGES = [
    "The weather in the north was cold and the roads were long.",
    "In this play the king of Denmark is Claudius, brother of the old king, and the queen is Gertrude.",
    "Romeo loves Juliet, and Verona is a city of many quarrels.",
]
ANSWER = "Claudius, brother of the old king"


@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer.train(FIXTURE.read_text(encoding="utf-8") + "\n".join(PASSAGES), vocab_size=400)


def tiny_bert(tok, **over) -> Bert:
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, block_size=64, heads=["qa"], **over)
    return Bert(cfg)


def test_windows_offsets_point_into_the_passage(tok):
    long = " ".join(FIXTURE.read_text(encoding="utf-8").split()[:60])
    w = windows(tok, "what word?", ["short passage here.", long], max_length=24, stride=4)
    assert w.passage[0] == 0 and w.passage.count(1) > 2
    q = tok.encode("what word?")
    for ids, types, offs in zip(w.input_ids, w.type_ids, w.offsets):
        assert len(ids) <= 24 and ids[0] == tok.cls_id and ids[-1] == tok.sep_id and ids[1 : 1 + len(q)] == q
        assert types == [0] * (len(q) + 2) + [1] * (len(ids) - len(q) - 2)
        assert offs[: len(q) + 2] == [NO_OFFSET] * (len(q) + 2) and offs[-1] == NO_OFFSET
    # each passage token's offsets cut out the text it encodes; consecutive windows share 4 tokens
    rows = [r for r, p in enumerate(w.passage) if p == 1]
    for r in rows:
        for i, (a, b) in zip(w.input_ids[r], w.offsets[r]):
            if (a, b) != NO_OFFSET and i != tok.unk_id:
                assert tok.decode([i]).replace("##", "") == long[a:b].lower()
    first, second = w.offsets[rows[0]][len(q) + 2 : -1], w.offsets[rows[1]][len(q) + 2 : -1]
    assert first[-4:] == second[:4]
    covered = {o for r in rows for o in w.offsets[r] if o != NO_OFFSET}
    assert len(covered) == len(tok.encode(long))  # every token of the passage is in some window


def test_question_over_the_reader_context_is_one_line(tok):
    with pytest.raises(ConfigError, match=r"^the question takes \d+ tokens: .* shorten the question$") as e:
        windows(tok, "why " * 40, PASSAGES, max_length=32)
    assert "\n" not in str(e.value)


def test_span_targets_cover_the_answer(tok):
    w = windows(tok, QUESTION, PASSAGES, max_length=64)
    a = PASSAGES[1].index(ANSWER)
    starts, ends = span_targets(w, [(-1, -1), (a, a + len(ANSWER)), (-1, -1)])
    assert starts[0] == ends[0] == starts[2] == ends[2] == 0  # no answer: [CLS]
    s, e = starts[1], ends[1]
    assert PASSAGES[1][w.offsets[1][s][0] : w.offsets[1][e][1]] == ANSWER


def test_best_span_equals_the_reference_loop():
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(5, 12, generator=g), torch.randn(5, 12, generator=g)
    context = torch.rand(5, 12, generator=g) > 0.3
    context[4] = False  # a window without passage tokens
    for L in (1, 3, 12):
        fast, ref = best_span(start, end, context, L), best_span_reference(start, end, context, L)
        assert torch.equal(fast[0][:4], ref[0][:4]) and torch.equal(fast[1][:4], ref[1][:4])
        torch.testing.assert_close(fast[2], ref[2])
        assert fast[2][4] == float("-inf")
        assert ((fast[1] - fast[0])[:4] < L).all() and (fast[1] >= fast[0]).all()


def test_reader_needs_the_qa_head(tok):
    cfg = dataclasses.replace(preset("bert-micro"), vocab_size=tok.vocab_size, heads=["mlm"])
    with pytest.raises(ConfigError, match="needs a bert run with the 'qa' head"):
        ExtractiveReader(Bert(cfg), tok)


def test_a_trained_reader_reads_the_answer_and_cites_its_passage(tok):
    model = tiny_bert(tok, dropout=0.0, attention_dropout=0.0)
    w = windows(tok, QUESTION, PASSAGES, max_length=64)
    a = PASSAGES[1].index(ANSWER)
    starts, ends = span_targets(w, [(-1, -1), (a, a + len(ANSWER)), (-1, -1)])
    batch = w.batch(range(len(w)), tok.pad_id)
    batch.update(start_positions=torch.tensor(starts), end_positions=torch.tensor(ends))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, metrics = span_extraction_loss(model, batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first and metrics["train_span_accuracy"] == 1.0
    reader = ExtractiveReader(model, tok, max_length=64)
    chunks = [Chunk(i, f"doc{i}.txt", "plays", "t", f"sec{i}", 0, p) for i, p in enumerate(PASSAGES)]
    spans = reader.spans(QUESTION, PASSAGES)
    assert spans[0].text == ANSWER and spans[0].passage == 1 and spans[0].score > spans[0].null
    hits = [Hit(c, s, r + 1) for r, (c, s) in enumerate(zip(chunks, (0.9, 0.8, 0.7)))]
    ans = reader.answer(QUESTION, hits)
    assert ans.text == f"{ANSWER} [2]" and [c.chunk for c in ans.citations] == [chunks[1]]
    assert ans.chunks == chunks and not ans.abstained
    # abstention: below the retrieval threshold, and where no window beats its null score
    assert reader.answer(QUESTION, hits, threshold=0.95).text == NOT_IN_KB
    assert reader.answer(QUESTION, [chunks[0]]).text == NOT_IN_KB
    assert ExtractiveReader(model, tok, max_length=64, use_null=False).answer(QUESTION, [chunks[0]]).text != NOT_IN_KB
