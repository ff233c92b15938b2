import dataclasses

import pytest
import torch

from genlab.core.registry import preset
from genlab.models import build_model
from genlab.models.gpt import GPT, GPTConfig


def param_count(name: str) -> int:
    with torch.device("meta"):
        return build_model(preset(name)).num_params()


def test_published_parameter_counts():
    assert param_count("gpt2") == 124_439_808
    assert abs(param_count("gpt1") - 117e6) / 117e6 < 0.01
    assert abs(param_count("gpt2-xl") - 1.56e9) / 1.56e9 < 0.01
    assert abs(param_count("gpt3-175b") - 175e9) / 175e9 < 0.01
    assert abs(param_count("gpt2-medium") - 355e6) / 355e6 < 0.01


@pytest.mark.slow
def test_gpt2_full_size_forward_backward():
    model = build_model(preset("gpt2"))
    ids = torch.randint(0, 50257, (1, 16))
    model(ids).logsumexp(-1).mean().backward()
    assert model.tok_emb.weight.grad is not None


def test_tied_embeddings_share_storage():
    m = GPT(preset("gpt-micro"))
    assert m.head.weight is m.tok_emb.weight
    untied = GPT(dataclasses.replace(preset("gpt-micro"), tie_embeddings=False))
    assert untied.num_params() == m.num_params() + 65 * 32


@pytest.mark.parametrize(
    "variant",
    [{}, {"pos": "rope"}, {"pos": "sinusoidal"}, {"mlp": "swiglu", "norm": "rmsnorm", "bias": False}, {"pos": "none"}],
)
def test_eager_and_sdpa_models_agree(variant):
    cfg = dataclasses.replace(preset("gpt-micro"), **variant)
    torch.manual_seed(0)
    a = GPT(dataclasses.replace(cfg, attention="eager"))
    b = GPT(dataclasses.replace(cfg, attention="sdpa"))
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 65, (3, 20))
    torch.testing.assert_close(a(ids), b(ids), atol=1e-5, rtol=1e-5)


def test_causal_model_ignores_future_tokens():
    m = GPT(dataclasses.replace(preset("gpt-micro"), pos="rope")).eval()
    ids = torch.randint(0, 65, (1, 16))
    ids2 = ids.clone()
    ids2[0, 10:] = (ids2[0, 10:] + 1) % 65
    torch.testing.assert_close(m(ids)[:, :10], m(ids2)[:, :10])


def test_bad_configs():
    with pytest.raises(ValueError, match="pos"):
        GPTConfig(pos="alibi9")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="exceeds the context"):
        GPT(preset("gpt-micro"))(torch.zeros(1, 33, dtype=torch.long))
