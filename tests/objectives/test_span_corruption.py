"""T5 span corruption: T5's counts of noise tokens and spans, the inputs and targets of a hand-made
mask, sentinels, the noise rates over many samples, and T5's input/target lengths."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.objectives.span_corruption import (
    SpanCorruptionConfig,
    noise_counts,
    random_spans_noise_mask,
    span_corrupt,
    t5_input_length,
)

SENTINELS = [100 - i for i in range(1, 21)]  # <extra_id_0> = 99, <extra_id_1> = 98, ... as in T5
EOS = 1


def _runs(mask: torch.Tensor) -> list[int]:
    """Lengths of the runs of True."""
    out, n = [], 0
    for v in mask.tolist() + [False]:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_the_paper_example() -> None:
    # "Thank you for inviting me to your party last week ." with "for inviting" and "last" dropped
    tokens = list(range(10, 21))
    mask = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0], dtype=torch.bool)
    inputs, targets = span_corrupt(tokens, SENTINELS, EOS, noise_mask=mask)
    assert inputs == [10, 11, 99, 14, 15, 16, 17, 98, 19, 20, EOS]
    assert targets == [99, 12, 13, 98, 18, EOS]


@pytest.mark.parametrize("length", [1, 2, 3, 5, 10, 19, 20, 21, 33, 100, 101, 512, 568])
def test_counts_are_t5s(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    n_noise, n_spans = noise_counts(length, 0.15, 3.0)
    L = max(length, 2)
    assert n_noise == min(max(round(L * 0.15), 1), L - 1)
    assert n_spans == max(round(n_noise / 3.0), 1)
    for _ in range(20):
        mask = random_spans_noise_mask(length, 0.15, 3.0, generator=g)
        assert mask.shape == (length,)
        if length >= 2:
            assert int(mask.sum()) == n_noise
            assert len(_runs(mask)) == n_spans
            assert not mask[0] and mask[-1]  # starts kept, ends with noise (T5's interleaving)


def test_noise_rate_and_mean_span_length_over_many_samples() -> None:
    g = torch.Generator().manual_seed(0)
    noise, total, spans = 0, 0, []
    for _ in range(400):
        mask = random_spans_noise_mask(200, generator=g)
        noise += int(mask.sum())
        total += 200
        spans += _runs(mask)
    assert noise / total == pytest.approx(0.15, abs=1e-9)  # exactly round(200 * 0.15) = 30 each
    assert sum(spans) / len(spans) == pytest.approx(3.0, abs=1e-9)  # 30 tokens in round(30/3) = 10 spans
    lengths = torch.tensor(spans, dtype=torch.float)
    assert lengths.min() >= 1 and lengths.std() > 1.0  # random lengths, not all 3


def test_span_lengths_follow_a_uniform_random_composition() -> None:
    # 60 tokens: 9 noise tokens in 3 spans. A uniform composition of n into m parts gives a span
    # length k with probability C(n-k-1, m-2) / C(n-1, m-1).
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(10)
    trials = 4000
    for _ in range(trials):
        counts[_runs(random_spans_noise_mask(60, generator=g))[0]] += 1
    for k in range(1, 8):
        exact = math.comb(9 - k - 1, 1) / math.comb(8, 2)
        assert float(counts[k]) / trials == pytest.approx(exact, abs=0.025)


def test_corruption_is_reversible() -> None:
    g = torch.Generator().manual_seed(3)
    tokens = list(range(200, 300))
    sentinel_ids = list(range(99, 79, -1))
    inputs, targets = span_corrupt(tokens, sentinel_ids, EOS, generator=g)
    assert inputs[-1] == EOS and targets[-1] == EOS
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets[:-1]:
        if t in sentinel_ids:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    rebuilt = [t for s in inputs[:-1] for t in (spans[s] if s in sentinel_ids else [s])]
    assert rebuilt == tokens
    assert sum(len(v) for v in spans.values()) == 15
    assert list(spans) == sentinel_ids[: len(spans)]  # <extra_id_0>, <extra_id_1>, ... in order


def test_same_generator_seed_same_corruption_and_no_eos_option() -> None:
    a = span_corrupt(range(50), SENTINELS, EOS, generator=torch.Generator().manual_seed(7))
    b = span_corrupt(range(50), SENTINELS, EOS, generator=torch.Generator().manual_seed(7))
    assert a == b
    inputs, targets = span_corrupt(range(50), SENTINELS, EOS, SpanCorruptionConfig(add_eos=False),
                                   torch.Generator().manual_seed(7))  # fmt: skip
    assert inputs == a[0][:-1] and targets == a[1][:-1]


def test_t5_input_and_target_lengths() -> None:
    assert t5_input_length(512) == (568, 114)  # T5's figures for inputs_length=512
    tokens, targets = t5_input_length(128)
    g = torch.Generator().manual_seed(0)
    inputs, labels = span_corrupt(range(tokens), list(range(999, 899, -1)), EOS, generator=g)
    assert len(inputs) == 128 and len(labels) == targets


def test_bad_settings_are_errors() -> None:
    with pytest.raises(ConfigError, match="noise_density"):
        random_spans_noise_mask(10, noise_density=1.5)
    with pytest.raises(ConfigError, match="sentinels"):
        span_corrupt(range(400), [99, 98], EOS)
    with pytest.raises(ConfigError, match="shape"):
        span_corrupt(range(4), SENTINELS, EOS, noise_mask=torch.ones(3, dtype=torch.bool))
