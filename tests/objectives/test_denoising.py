"""BART noising and PEGASUS gap sentences on hand-made inputs: what is masked, what the target is,
and the noise rates over many samples; our ROUGE-1 against rouge-score."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.objectives import denoising as dn

MASK, EOS = 4, 1
FIXTURE = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ BART


def test_token_masking_rate_and_kept_ids() -> None:
    g = _g()
    ids = list(range(10, 110))
    masked = total = 0
    for _ in range(200):
        out = dn.token_masking(ids, MASK, 0.15, g, keep=frozenset({10}))
        assert len(out) == len(ids) and out[0] == 10
        assert all(o in (i, MASK) for o, i in zip(out, ids))
        masked += sum(o == MASK for o in out[1:])
        total += len(ids) - 1
    assert masked / total == pytest.approx(0.15, abs=0.01)


def test_token_deletion_rate_keeps_order() -> None:
    g = _g(1)
    ids = list(range(10, 210))
    kept = 0
    for _ in range(100):
        out = dn.token_deletion(ids, 0.2, g)
        assert out == sorted(out) and set(out) <= set(ids)
        kept += len(out)
    assert 1 - kept / (100 * len(ids)) == pytest.approx(0.2, abs=0.01)


def test_text_infilling_covers_exactly_the_ratio_with_one_mask_per_span() -> None:
    g = _g(2)
    ids = list(range(100, 200))
    lengths, zero = [], 0
    for _ in range(300):
        out, spans = dn.text_infilling(ids, MASK, 0.3, 3.0, g, return_spans=True)
        assert sum(length for _, length in spans) == 30  # round(0.3 * 100), exactly
        assert out.count(MASK) == len(spans)  # one <mask> per span, 0-length spans included
        assert len(out) == 100 - 30 + len(spans)
        # The kept tokens are exactly those outside the spans, in order.
        covered = {p for s, n in spans for p in range(s, s + n)}
        assert [t for i, t in enumerate(ids) if i not in covered] == [t for t in out if t != MASK]
        starts = [s for s, _ in spans]
        assert starts == sorted(starts)
        for (s1, n1), (s2, _) in zip(spans, spans[1:]):
            assert s1 + n1 <= s2  # no overlap
        lengths += [n for _, n in spans[:-1]]  # the last span is cut to fit the budget
        zero += sum(n == 0 for _, n in spans)
    mean = sum(lengths) / len(lengths)
    assert mean == pytest.approx(3.0, abs=0.25)  # Poisson(3)
    assert zero > 0  # 0-length spans (insertions) occur: P(0) = e^-3 ≈ 5%
    assert zero / (len(lengths) + 300) == pytest.approx(0.0498, abs=0.02)


def test_poisson_span_lengths_sum_to_the_budget() -> None:
    g = _g(3)
    for budget in (0, 1, 7, 50):
        lengths = dn.poisson_span_lengths(budget, 3.0, g)
        assert sum(lengths) == budget and all(n >= 0 for n in lengths)


def test_sentence_permutation_and_rotation() -> None:
    g = _g(4)
    sentences = [[1, 2], [3], [4, 5, 6]]
    orders = set()
    for _ in range(200):
        out = dn.sentence_permutation(sentences, g)
        assert sorted(out) == [1, 2, 3, 4, 5, 6]
        orders.add(tuple(out))
    assert len(orders) == 6  # every order of 3 sentences appears
    starts = set()
    for _ in range(200):
        out = dn.document_rotation([1, 2, 3, 4], g)
        k = out.index(1)
        assert out[k:] + out[:k] == [1, 2, 3, 4]
        starts.add(out[0])
    assert starts == {1, 2, 3, 4}


def test_bart_noise_targets_the_original_document() -> None:
    sentences = [[10, 11, 12, 13], [20, 21, 22], [30, 31, 32, 33, 34]]
    x, y = dn.bart_noise(sentences, MASK, EOS, generator=_g(5))
    assert y == [10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 33, 34, EOS]
    assert x[-1] == EOS and MASK in x
    assert len([t for t in x if t not in (MASK, EOS)]) == 12 - round(0.3 * 12)
    off = dn.BartNoiseConfig(permute_sentences=False, infill_ratio=0.0)
    assert dn.bart_noise(sentences, MASK, EOS, off, _g(5)) == (y, y)
    every = dn.BartNoiseConfig(token_mask=0.2, token_delete=0.2, rotate=True, add_eos=False)
    x2, y2 = dn.bart_noise(sentences, MASK, EOS, every, _g(6))
    assert y2 == y[:-1] and EOS not in x2
    with pytest.raises(ConfigError, match="empty document"):
        dn.bart_noise([[]], MASK, EOS)


# ------------------------------------------------------------------------------ PEGASUS

DOC = [
    "The cat sat on the mat.",
    "The cat sat on the mat with the dog, and the dog sat on the cat.",
    "Stock prices fell sharply in Tokyo.",
    "The dog and the cat sat on the mat.",
    "Rain is expected tomorrow.",
    "Bananas are yellow.",
    "Oil rose.",
    "The mat is red.",
    "A red mat for the cat and the dog.",
    "Nothing else.",
]


def test_split_sentences() -> None:
    text = 'Dr. Smith went home. He said "Hello!" Then he left.\nNew paragraph without stop'
    assert dn.split_sentences(text) == ["Dr.", "Smith went home.", 'He said "Hello!"', "Then he left.",
                                        "New paragraph without stop"]  # fmt: skip


def test_independent_selection_takes_the_top_rouge_sentences() -> None:
    tokens = [dn.rouge_tokens(s) for s in DOC]
    scores = [dn.rouge1_f1(tokens[i], [t for j in range(10) if j != i for t in tokens[j]]) for i in range(10)]
    chosen = dn.select_gap_sentences(DOC, 0.3, "independent")
    assert len(chosen) == 3  # round(0.3 * 10)
    assert chosen == sorted(sorted(range(10), key=lambda i: -scores[i])[:3])
    assert 2 not in chosen and 5 not in chosen  # off-topic sentences are never principal
    assert {1, 3} <= set(chosen)


def test_sequential_selection_is_greedy_on_the_union() -> None:
    chosen = dn.select_gap_sentences(DOC, 0.3, "sequential")
    assert len(chosen) == 3
    rest = [dn.rouge_tokens(" ".join(DOC[:i] + DOC[i + 1 :])) for i in range(10)]
    alone = [dn.rouge1_f1(dn.rouge_tokens(DOC[i]), rest[i]) for i in range(10)]
    first = max(range(10), key=lambda i: (alone[i], -i))  # the greedy step 1 is the independent top-1
    assert first in chosen


def test_gap_sentence_input_and_target() -> None:
    source, target, chosen = dn.gap_sentence_texts(DOC)
    assert source.count("<mask_1>") == 3
    for i in chosen:
        assert DOC[i] not in source.split("<mask_1>")
    assert target == " ".join(DOC[i] for i in chosen)
    words = {w: i + 10 for i, w in enumerate(sorted({w for s in DOC for w in s.split()} | {"<mask_1>"}))}
    encode = lambda s: [words[w] for w in s.split()]
    x, y = dn.gap_sentence_example(DOC, encode, EOS)
    assert x[-1] == EOS and y == encode(target) + [EOS]
    assert x.count(words["<mask_1>"]) == 3
    cfg = dn.GapSentenceConfig(token_mask_rate=0.5)
    xm, _ = dn.gap_sentence_example(DOC, encode, EOS, cfg, token_mask_id=MASK,
                                    keep_ids=frozenset({words["<mask_1>"]}), generator=_g())  # fmt: skip
    assert xm.count(words["<mask_1>"]) == 3 and MASK in xm
    with pytest.raises(ConfigError, match="token_mask_id"):
        dn.gap_sentence_example(DOC, encode, EOS, cfg)


def test_gap_ratio_counts() -> None:
    assert len(dn.select_gap_sentences(["One.", "Two."], 0.3)) == 1  # at least one
    assert dn.select_gap_sentences(["Only one."]) == [0]
    assert len(dn.select_gap_sentences(DOC, 0.5)) == 5
    with pytest.raises(ConfigError, match="selection"):
        dn.select_gap_sentences(DOC, 0.3, "random")


def test_rouge1_equals_rouge_score_on_real_text() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    lines = [line for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()][:400]
    for a, b in zip(lines[::2], lines[1::2]):
        ours = dn.rouge1_f1(dn.rouge_tokens(a), dn.rouge_tokens(b))
        assert ours == pytest.approx(scorer.score(b, a)["rouge1"].fmeasure, abs=1e-12)
    doc = " ".join(lines[:40])
    for s in lines[:40]:
        ours = dn.rouge1_f1(dn.rouge_tokens(s), dn.rouge_tokens(doc))
        assert ours == pytest.approx(scorer.score(doc, s)["rouge1"].fmeasure, abs=1e-12)
