"""Mixture of experts in GPT: config data, CLI overrides, the auxiliary loss and KV-cache decoding."""

import dataclasses

import pytest
import torch

from genlab.core.config import parse_overrides
from genlab.core.errors import ConfigError
from genlab.core.registry import preset
from genlab.generation.decode import GenerationConfig, generate
from genlab.layers.moe import MoE, MoEConfig
from genlab.models.gpt import GPT, GPTConfig
from genlab.models.outputs import ModelOutput
from genlab.objectives.causal_lm import causal_lm_loss
from genlab.runs import model_config


def overrides(*items):
    return parse_overrides(list(items))["model"]


def test_default_gpt_has_no_moe_and_the_same_keys():
    cfg = preset("gpt-micro")
    assert not cfg.moe.enabled
    model = GPT(cfg)
    assert model.moe_layers == []
    assert not any("router" in k or "experts" in k for k in model.state_dict())
    assert isinstance(model(torch.zeros(1, 4, dtype=torch.long)), torch.Tensor)


def test_cli_overrides_reach_the_nested_moe_config():
    items = ["model.moe.num_experts=8", "model.moe.top_k=2", "model.moe.every=2", "model.moe.capacity_factor=1.25"]
    cfg = model_config({"preset": "gpt-micro", **overrides(*items)})
    assert cfg.moe == MoEConfig(num_experts=8, top_k=2, every=2, capacity_factor=1.25)
    model = GPT(cfg)
    assert [isinstance(b.mlp, MoE) for b in model.blocks] == [False, True]  # every 2nd layer
    assert model.blocks[1].mlp.experts.fc.weight.shape == (8, 32, 128)  # (E, C, H): H = mlp_ratio C
    assert "blocks.1.mlp.router.weight" in model.state_dict()


def test_preset_moe_options_can_be_overridden_and_turned_off():
    cfg = model_config({"preset": "gpt-moe-micro", **overrides("model.moe.top_k=1")})
    assert cfg.moe.top_k == 1 and cfg.moe.num_experts == 4 and cfg.moe.shared_experts == 1
    dense = model_config({"preset": "gpt-moe-micro", **overrides("model.moe.num_experts=0")})
    assert GPT(dense).moe_layers == []


@pytest.mark.parametrize(
    "items, words",
    [
        (["model.moe.num_expert=8"], "unknown key 'model.moe.num_expert' (did you mean 'num_experts'?)"),
        (["model.moe.num_experts=2", "model.moe.top_k=3"], "moe.top_k=3 exceeds moe.num_experts=2"),
        (["model.moe.router=hash"], "moe.router='hash'"),
    ],
)
def test_bad_moe_overrides_are_one_line_errors(items, words):
    with pytest.raises(ConfigError) as e:
        model_config({"preset": "gpt-micro", **overrides(*items)})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_moe_on_a_family_without_it_is_a_clear_error():
    with pytest.raises(ConfigError) as e:
        model_config({"preset": "vit-fashion", **overrides("model.moe.num_experts=8")})
    msg = str(e.value)
    assert "the vit family has no mixture-of-experts option" in msg and "bert, gpt" in msg and "\n" not in msg


def test_forward_returns_the_summed_aux_loss_and_the_objective_passes_it_on():
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("gpt-moe-micro"), moe=MoEConfig(num_experts=4, top_k=2, z_loss_coef=1e-3))
    model = GPT(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    out = model(ids)
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 12, cfg.vocab_size)
    layers = model.moe_layers
    assert len(layers) == 2
    torch.testing.assert_close(out.aux_loss, layers[0].aux_loss + layers[1].aux_loss)
    loss, metrics = causal_lm_loss(model, (ids, ids))
    assert metrics["aux_loss"] is not None and metrics["aux_loss"].dim() == 0
    (loss + metrics["aux_loss"]).backward()
    for m in layers:
        assert m.router.weight.grad.abs().sum() > 0 and m.experts.fc.weight.grad.abs().sum() > 0
    with_states = model(ids, hidden_states=True)
    assert len(with_states.hidden_states) == cfg.n_layer + 1 and with_states.aux_loss is not None


def test_first_dense_layers_and_expert_widths():
    moe = MoEConfig(num_experts=4, top_k=2, first_dense=1, expert_hidden=24, shared_experts=2)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=16, mlp="swiglu", bias=False, moe=moe)
    model = GPT(cfg)
    assert [isinstance(b.mlp, MoE) for b in model.blocks] == [False, True, True]
    moe = model.blocks[1].mlp
    assert moe.experts.fc.weight.shape == (4, 16, 48) and moe.experts.proj.weight.shape == (4, 24, 16)
    assert moe.shared.proj.weight.shape == (16, 48)  # two shared experts of 24, as one FFN


def test_moe_init_scales_expert_output_projections_and_zeroes_biases():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=8, n_head=2, n_embd=64, moe=MoEConfig(num_experts=4))
    moe = GPT(cfg).moe_layers[0]
    assert abs(moe.experts.proj.weight.std().item() - 0.02 / 4) < 2e-3  # 0.02 / sqrt(2 L)
    assert moe.experts.fc.bias.abs().sum() == 0 and moe.experts.proj.bias.abs().sum() == 0


@pytest.mark.parametrize("opts", [{}, {"capacity_factor": 1.0}, {"router": "sigmoid", "bias_balancing": True}])
def test_kv_cache_decoding_equals_full_recompute(opts):
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("gpt-moe-micro"), moe=dataclasses.replace(preset("gpt-moe-micro").moe, **opts))
    model = GPT(cfg).eval()
    prompts = [[1, 2, 3, 4], [5, 6, 7]]
    cached = generate(model, prompts, GenerationConfig(max_new_tokens=10, temperature=0.0, use_cache=True))
    full = generate(model, prompts, GenerationConfig(max_new_tokens=10, temperature=0.0, use_cache=False))
    assert [g[0].tokens for g in cached] == [g[0].tokens for g in full]
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    cache = model.make_cache(1, 32)
    with torch.no_grad():
        model(ids[:, :4], cache=cache)
        step = model(ids[:, 4:5], cache=cache).logits
        ref = model(ids[:, :5]).logits[:, -1:]
    torch.testing.assert_close(step, ref, atol=1e-5, rtol=1e-5)


def test_reversible_blocks_refuse_moe_layers():
    with pytest.raises(ValueError, match="reversible"):
        GPTConfig(n_layer=2, n_head=2, n_embd=32, reversible=True, moe=MoEConfig(num_experts=4, top_k=2))
