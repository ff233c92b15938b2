import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.generation.decode import generate
from genlab.generation.processors import check_sampling, sample_next, temperature, top_k, top_p
from genlab.models.gpt import GPT


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


def test_greedy_generation_equals_repeated_argmax():
    torch.manual_seed(0)
    model = GPT(preset("gpt-micro")).eval()
    ids = torch.randint(0, 65, (2, 5))
    out = generate(model, ids, 8, block_size=32, temperature=0)
    ref = ids
    for _ in range(8):
        ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)


def test_context_is_cropped_to_the_block_size():
    model = GPT(preset("gpt-micro")).eval()
    out = generate(model, torch.zeros(1, 30, dtype=torch.long), 10, block_size=32, temperature=1.0)
    assert out.shape == (1, 40)


def test_bad_sampling_settings():
    for args in [(-0.1, 0, 1.0), (1.0, -1, 1.0), (1.0, 0, 0.0), (1.0, 0, 1.01)]:
        with pytest.raises(ConfigError):
            check_sampling(*args)
