import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.generation.processors import (
    check_sampling,
    min_p,
    repetition_penalty,
    sample_next,
    temperature,
    top_k,
    top_p,
)


def logits_of(probs):
    return torch.tensor([probs]).log()


def kept(logits):
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


@pytest.mark.parametrize(
    ("probs", "p", "expect"),
    [
        ([0.5, 0.3, 0.15, 0.05], 0.5, [0]),  # the top token alone reaches 0.5
        ([0.5, 0.3, 0.15, 0.05], 0.51, [0, 1]),
        ([0.5, 0.3, 0.15, 0.05], 0.8, [0, 1]),  # 0.5 + 0.3 reaches 0.8 exactly
        ([0.5, 0.3, 0.15, 0.05], 0.81, [0, 1, 2]),
        ([0.05, 0.15, 0.3, 0.5], 0.9, [1, 2, 3]),  # order does not matter
        ([0.25, 0.25, 0.25, 0.25], 0.6, [0, 1, 2]),
        ([0.9, 0.1], 0.01, [0]),  # the top token is always kept
        ([0.2, 0.8], 1e-300, [1]),  # even when p rounds to 0 in float32
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(probs, p, expect):
    assert sorted(kept(top_p(logits_of(probs), p))) == expect


def test_top_k_and_temperature():
    z = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert sorted(kept(top_k(z, 2))) == [1, 2]
    assert kept(top_k(z, 0)) == [0, 1, 2, 3]
    t = torch.softmax(temperature(z, 0.5), -1)
    assert t[0, 1] > torch.softmax(z, -1)[0, 1]


def test_temperature_zero_is_argmax_and_sampling_follows_the_distribution():
    z = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert sample_next(z, t=0).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    draws = torch.stack([sample_next(probs.log(), 1.0, generator=g) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=3) / 4000
    assert torch.allclose(freq, probs[0], atol=0.03)


def test_bad_sampling_settings():
    for args in [(-0.1, 0, 1.0), (1.0, -1, 1.0), (1.0, 0, 0.0), (1.0, 0, 1.01)]:
        with pytest.raises(ConfigError):
            check_sampling(*args)


def test_min_p_scales_with_the_top_probability():
    assert sorted(kept(min_p(logits_of([0.6, 0.25, 0.1, 0.05]), 0.2))) == [0, 1]  # threshold 0.12
    assert sorted(kept(min_p(logits_of([0.3, 0.3, 0.25, 0.15]), 0.5))) == [0, 1, 2, 3]  # threshold 0.15


def test_repetition_penalty_pushes_seen_tokens_down():
    z = torch.tensor([[2.0, -1.0, 0.5]])
    seen = torch.tensor([[True, True, False]])
    assert repetition_penalty(z, seen, 2.0).tolist() == [[1.0, -2.0, 0.5]]


def test_a_tiny_temperature_samples_the_argmax_instead_of_overflowing():
    """logits / 1e-300 overflow to inf (softmax: nan); the max is shifted to 0 first (found by the API fuzzer)."""
    logits = torch.tensor([[2.0, 5.0, -1.0, float("-inf")], [0.0, -3.0, 1.0, 0.5]])
    for t in (1e-300, 5e-324):
        assert sample_next(logits, t, generator=torch.Generator().manual_seed(0)).tolist() == [1, 2]
