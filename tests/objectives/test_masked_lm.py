import math

import pytest
import torch

from genlab.objectives.masked_lm import (
    collate_pairs,
    gather_span_boundaries,
    mask_tokens,
    masked_lm_loss,
    next_sentence_pairs,
    sentence_order_pairs,
    span_length_probs,
    span_mask,
)

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)
V = 1000


def batch(lengths: list[int], T: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] n random ordinary tokens [SEP] [PAD]..., one row per length n: (ids, attention_mask)."""
    ids = torch.full((len(lengths), T), PAD)
    attention = torch.zeros((len(lengths), T), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, : n + 2] = torch.cat(
            [torch.tensor([CLS]), torch.randint(4, V, (n,), generator=generator), torch.tensor([SEP])]
        )
        attention[i, : n + 2] = 1
    return ids, attention


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- mask_tokens -----------------------------------------------------------------------------


def test_fixed_count_rate_uniform_positions_and_80_10_10_split():
    # 4000 sequences of 20 maskable tokens: exactly round(0.15 * 20) = 3 selected in each.
    n_rows, n = 4000, 20
    ids, attention = batch([n] * n_rows, n + 2, seeded(0))
    inputs, labels = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(1))
    selected = labels != -100
    assert (selected.sum(1) == 3).all()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])

    # Each maskable position is selected with probability 3/20 = 0.15. With 4000 draws per position
    # the standard error is sqrt(0.15 * 0.85 / 4000) = 0.0056; 5 SE over 20 positions = 0.028.
    per_position = selected[:, 1:-1].float().mean(0)
    assert (per_position - 0.15).abs().max() < 0.028

    # 80/10/10 over the 12,000 selected tokens. A random token equals the original with
    # probability 1/|C|, |C| = 996 candidates, so it then counts as "kept".
    chosen, original = inputs[selected], ids[selected]
    n_sel = chosen.numel()
    p_masked = (chosen == MASK).float().mean().item()
    p_random = ((chosen != MASK) & (chosen != original)).float().mean().item()
    p_kept = (chosen == original).float().mean().item()
    expected = {"masked": 0.8, "random": 0.1 * (1 - 1 / 996), "kept": 0.1 + 0.1 / 996}
    for name, observed in [("masked", p_masked), ("random", p_random), ("kept", p_kept)]:
        q = expected[name]
        se = math.sqrt(q * (1 - q) / n_sel)  # 0.0037 for 0.8, 0.0027 for 0.1
        assert abs(observed - q) < 5 * se, (name, observed, q)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 13, 20, 33, 47, 60])
def test_count_is_python_round_at_least_one(n):
    ids, attention = batch([n], 64, seeded(n))
    _, labels = mask_tokens(
        ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, attention_mask=attention, generator=seeded(0)
    )
    expected = 0 if n == 0 else max(1, round(0.15 * n))
    assert int((labels != -100).sum()) == expected


def test_special_tokens_and_padding_are_never_masked_and_random_tokens_are_never_special():
    g = seeded(0)
    ids, attention = batch(torch.randint(0, 30, (500,), generator=g).tolist(), 32, g)
    ids[:, 5] = torch.where(attention[:, 5] == 1, 7, ids[:, 5])  # an id we declare special below
    for kwargs in [
        {"special_ids": (*SPECIAL, 7)},
        # special positions marked by a mask, their ids given for the random draw only
        {"special_mask": torch.isin(ids, torch.tensor([CLS, SEP, 7])), "exclude_ids": (*SPECIAL, 7)},
    ]:
        inputs, labels = mask_tokens(
            ids, mask_id=MASK, vocab_size=V, attention_mask=attention, generator=seeded(2), rate=0.5, **kwargs
        )
        special = torch.isin(ids, torch.tensor([*SPECIAL, 7])) | (attention == 0)
        assert (labels[special] == -100).all()
        assert torch.equal(inputs[special], ids[special])
        replaced = (labels != -100) & (inputs != MASK) & (inputs != ids)
        assert replaced.sum() > 100
        assert not torch.isin(inputs[replaced], torch.tensor([*SPECIAL, 7])).any()


def test_seeded_masking_is_reproducible_and_seeds_differ():
    ids, attention = batch([25] * 16, 27, seeded(0))

    def draw(seed):
        return mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(seed))

    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_leading_axes_and_options_are_checked():
    ids, _ = batch([10], 12, seeded(0))
    inputs, labels = mask_tokens(ids[0], mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(0))
    assert inputs.shape == labels.shape == (12,)
    only_mask, _ = mask_tokens(
        ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, rate=1.0, replace=(1.0, 0.0, 0.0), generator=seeded(0)
    )
    assert torch.equal(only_mask[0, 1:-1], torch.full((10,), MASK))
    with pytest.raises(ValueError, match="sum to 1"):
        mask_tokens(ids, mask_id=MASK, vocab_size=V, replace=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="rate"):
        mask_tokens(ids, mask_id=MASK, vocab_size=V, rate=0.0)
    with pytest.raises(ValueError, match="random replacement"):
        mask_tokens(ids, mask_id=MASK, vocab_size=4, special_ids=SPECIAL)


# --- span_mask -------------------------------------------------------------------------------


def spans_of(labels_row: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal runs (start, end exclusive) of labelled positions."""
    runs, start = [], None
    flags = (labels_row != -100).tolist() + [False]
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        if not f and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_span_lengths_follow_the_truncated_geometric_distribution():
    p, l_max = 0.2, 10
    weights = [p * (1 - p) ** (k - 1) for k in range(1, l_max + 1)]
    probs = [w / sum(weights) for w in weights]
    mean = sum(k * q for k, q in zip(range(1, l_max + 1), probs))
    sd = math.sqrt(sum(k * k * q for k, q in zip(range(1, l_max + 1), probs)) - mean**2)
    assert abs(mean - 3.8) < 0.01  # the mean SpanBERT reports
    torch.testing.assert_close(span_length_probs(p, l_max), torch.tensor(probs, dtype=torch.float64))

    ids, _ = batch([2000] * 12, 2002, seeded(0))
    _, labels, bounds = span_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(1))
    lengths = (bounds[..., 1] - bounds[..., 0] - 1)[bounds[..., 2] == 0].double()  # one entry per span
    assert (labels != -100).sum(1).eq(300).all()  # exactly the 15% budget per sequence
    assert lengths.min() >= 1 and lengths.max() <= l_max
    # ~950 spans: the standard error of the mean is sd / sqrt(n) ~ 0.085. The last span of each
    # sequence may be cut to the budget: at most 9 tokens over ~79 spans, a bias below 0.03 on average.
    n = lengths.numel()
    assert abs(lengths.mean().item() - mean) < 4 * sd / math.sqrt(n) + 0.03
    p1 = (lengths == 1).double().mean().item()  # P(l = 1) = 0.224, SE 0.0135
    assert abs(p1 - probs[0]) < 4 * math.sqrt(probs[0] * (1 - probs[0]) / n)


def test_spans_are_contiguous_inside_real_tokens_with_boundaries_and_per_span_replacement():
    g = seeded(5)
    lengths = torch.randint(0, 120, (200,), generator=g).tolist()
    ids, attention = batch(lengths, 122, g)
    inputs, labels, bounds = span_mask(
        ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, attention_mask=attention, generator=seeded(6)
    )
    special = torch.isin(ids, torch.tensor(SPECIAL))
    assert (labels[special] == -100).all() and torch.equal(inputs[special], ids[special])
    assert ((bounds[..., 2] >= 0) == (labels != -100)).all()
    kinds = {"mask": 0, "random": 0, "keep": 0}
    for b, n in enumerate(lengths):
        runs = spans_of(labels[b])
        assert sum(e - s for s, e in runs) == (0 if n == 0 else max(1, round(0.15 * n)))
        for s, e in runs:
            assert e - s <= 10
            # Boundaries: the real, unmasked tokens on each side; offsets 0 .. length - 1.
            assert (bounds[b, s:e, 0] == s - 1).all() and (bounds[b, s:e, 1] == e).all()
            assert torch.equal(bounds[b, s:e, 2], torch.arange(e - s))
            assert attention[b, s - 1] == 1 and attention[b, e] == 1
            assert labels[b, s - 1] == -100 and labels[b, e] == -100
            span, original = inputs[b, s:e], ids[b, s:e]
            if (span == MASK).all():
                kinds["mask"] += 1
            elif torch.equal(span, original):
                kinds["keep"] += 1
            else:  # random tokens, all of them: none is [MASK] or special
                assert not torch.isin(span, torch.tensor(SPECIAL)).any()
                kinds["random"] += 1
    total = sum(kinds.values())  # ~900 spans: SE of the 0.8 share = 0.013
    assert abs(kinds["mask"] / total - 0.8) < 4 * math.sqrt(0.16 / total)
    assert abs(kinds["random"] / total - 0.1) < 4 * math.sqrt(0.09 / total) + 0.01


def test_span_mask_seeding_and_a_sequence_too_short_for_a_span():
    ids, attention = batch([40] * 8, 42, seeded(0))
    a = span_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(1))
    b = span_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(1))
    c = span_mask(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=seeded(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])
    # Without [CLS]/[SEP] the first and last tokens cannot be in a span: they have no outer neighbour.
    bare = torch.tensor([[10, 11]])
    _, labels, bounds = span_mask(bare, mask_id=MASK, vocab_size=V, rate=1.0, generator=seeded(0))
    assert (labels == -100).all() and (bounds == -1).all()


def test_gather_span_boundaries_picks_the_boundary_states_in_label_order():
    hidden = torch.arange(2 * 6 * 2, dtype=torch.float).view(2, 6, 2)  # (B, T, D), row t of batch b = 12b + 2t
    bounds = torch.full((2, 6, 3), -1)
    bounds[0, 2:4] = torch.tensor([[1, 4, 0], [1, 4, 1]])  # span 2..3 of row 0
    bounds[1, 3] = torch.tensor([2, 4, 0])  # span 3..3 of row 1
    left, right, offset = gather_span_boundaries(hidden, bounds)
    torch.testing.assert_close(left, hidden[[0, 0, 1], [1, 1, 2]])
    torch.testing.assert_close(right, hidden[[0, 0, 1], [4, 4, 4]])
    assert offset.tolist() == [0, 1, 0]


# --- masked_lm_loss --------------------------------------------------------------------------


def test_masked_lm_loss_averages_over_labelled_positions():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, -5.0, 9.0]]], requires_grad=True)
    labels = torch.tensor([[0, 2, -100]])
    loss, metrics = masked_lm_loss(logits, labels)
    by_hand = -(math.log(math.exp(2) / (math.exp(2) + 2)) + math.log(1 / (math.e + 2))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert metrics == {"mlm_accuracy": 0.5, "mlm_tokens": 2}
    loss.backward()
    assert (logits.grad[0, 2] == 0).all()
    empty, metrics = masked_lm_loss(logits, torch.full((1, 3), -100))
    assert empty.item() == 0.0 and metrics["mlm_tokens"] == 0
    empty.backward()


# --- sentence pairs --------------------------------------------------------------------------


def documents() -> list[list[list[int]]]:
    """16 documents of 3-9 sentences of 2-12 tokens; every token id is unique (>= 10)."""
    g, docs, next_id = seeded(0), [], 10
    for _ in range(16):
        doc = []
        for _ in range(int(torch.randint(3, 10, (1,), generator=g))):
            n = int(torch.randint(2, 13, (1,), generator=g))
            doc.append(list(range(next_id, next_id + n)))
            next_id += n
        docs.append(doc)
    return docs


def locate(docs) -> dict[int, tuple[int, int]]:
    """token id -> (document, position in the document's token stream)."""
    where = {}
    for d, doc in enumerate(docs):
        for i, t in enumerate(t for s in doc for t in s):
            where[t] = (d, i)
    return where


def check_layout(pair, max_len):
    assert pair.input_ids == [CLS, *pair.a, SEP, *pair.b, SEP]
    assert pair.token_type_ids == [0] * (len(pair.a) + 2) + [1] * (len(pair.b) + 1)
    assert len(pair.input_ids) <= max_len and pair.a and pair.b


def is_run(tokens, where) -> bool:
    """The tokens are consecutive in one document."""
    places = [where[t] for t in tokens]
    return all(d == places[0][0] and i == places[0][1] + k for k, (d, i) in enumerate(places))


def test_sentence_order_pairs_are_balanced_and_swapped_pairs_are_really_swapped():
    docs = documents()
    where = locate(docs)
    pairs = sentence_order_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=32, rng=0)
    assert len(pairs) > 20
    ones = sum(p.label for p in pairs)
    assert abs(2 * ones - len(pairs)) <= 1
    sentence_starts = {s[0] for doc in docs for s in doc}
    for p in pairs:
        check_layout(p, 32)
        assert p.a[0] in sentence_starts and p.b[0] in sentence_starts  # whole sentences
        first, second = (p.a, p.b) if p.label == 0 else (p.b, p.a)
        assert is_run(first + second, where)  # in document order once unswapped
        assert not is_run(p.b + p.a, where) if p.label == 0 else not is_run(p.a + p.b, where)
    again = sentence_order_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=32, rng=0)
    other = sentence_order_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=32, rng=1)
    assert again == pairs and other != pairs


def test_next_sentence_pairs_draw_negatives_from_another_document():
    docs = documents()
    where = locate(docs)
    pairs = next_sentence_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=32, rng=0)
    ones = sum(p.label for p in pairs)
    assert len(pairs) > 20 and abs(2 * ones - len(pairs)) <= 1
    for p in pairs:
        check_layout(p, 32)
        assert is_run(p.a, where) and is_run(p.b, where)
        if p.label == 0:
            assert is_run(p.a + p.b, where)
        else:
            assert where[p.a[0]][0] != where[p.b[0]][0]
    assert next_sentence_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=32, rng=0) == pairs
    with pytest.raises(ValueError, match="two non-empty documents"):
        next_sentence_pairs(docs[:1], cls_id=CLS, sep_id=SEP)


def test_collate_pairs_pads_to_the_longest():
    docs = documents()
    pairs = sentence_order_pairs(docs, cls_id=CLS, sep_id=SEP, max_len=32, rng=0)[:4]
    out = collate_pairs(pairs, pad_id=PAD)
    T = max(len(p.input_ids) for p in pairs)
    assert out["input_ids"].shape == out["token_type_ids"].shape == out["attention_mask"].shape == (4, T)
    assert out["labels"].tolist() == [p.label for p in pairs]
    for i, p in enumerate(pairs):
        n = len(p.input_ids)
        assert out["input_ids"][i, :n].tolist() == p.input_ids and (out["input_ids"][i, n:] == PAD).all()
        assert out["attention_mask"][i].sum() == n
