"""Mixtral / Qwen2-MoE interop: genlab <-> Hugging Face transformers on small random configs built here.

Nothing touches the hub: each Hugging Face model is random-initialised and saved with save_pretrained."""

import dataclasses
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from genlab.core.errors import ConfigError
from genlab.generation.decode import GenerationConfig, generate
from genlab.layers.moe import MoEConfig
from genlab.models.convert import moe as convert
from genlab.models.gpt import GPT, GPTConfig

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.1,
    bos_token_id=None,
    eos_token_id=None,
)


def hf_mixtral(path, **kw):
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(**{**SMALL, "intermediate_size": 48, "num_local_experts": 4, **kw})
    transformers.MixtralForCausalLM(cfg).save_pretrained(path)
    return path


def hf_qwen(path, **kw):
    torch.manual_seed(0)
    cfg = transformers.Qwen2MoeConfig(
        **{
            **SMALL,
            "intermediate_size": 64,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 40,
            "num_experts": 6,
            "num_experts_per_tok": 2,
            "mlp_only_layers": [0],
            "qkv_bias": False,
            **kw,
        }
    )
    transformers.Qwen2MoeForCausalLM(cfg).save_pretrained(path)
    return path


def hf_load(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path).eval()


def assert_same_model(ours: GPT, theirs, seed=0):
    ids = torch.randint(0, ours.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=ATOL, rtol=0)
    prompts = [[5, 17, 3], [40, 2, 9]]
    g = generate(ours, prompts, GenerationConfig(max_new_tokens=12, temperature=0.0))
    for p, gens in zip(prompts, g):
        ref = theirs.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, pad_token_id=0)
        assert gens[0].tokens == ref[0, len(p) :].tolist()


@pytest.mark.parametrize("kw", [{}, {"tie_word_embeddings": True, "num_experts_per_tok": 1}])
def test_mixtral_to_genlab_same_logits_and_greedy_text(tmp_path, kw):
    path = hf_mixtral(tmp_path / "hf", **kw)
    ours = convert.load_hf_moe(path)
    assert ours.config.moe.num_experts == 4 and len(ours.moe_layers) == 3
    assert_same_model(ours, hf_load(path))


@pytest.mark.parametrize("kw", [{}, {"norm_topk_prob": True, "decoder_sparse_step": 2, "mlp_only_layers": []}])
def test_qwen2_moe_to_genlab_same_logits_and_greedy_text(tmp_path, kw):
    path = hf_qwen(tmp_path / "hf", **kw)
    ours = convert.load_hf_moe(path)
    m = ours.config.moe
    assert m.shared_gate and m.shared_hidden == 40 and m.expert_hidden == 16
    assert_same_model(ours, hf_load(path))


def genlab_moe(**moe) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=96,
        block_size=64,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=32,
        mlp_ratio=1.5,
        pos="rope",
        norm="rmsnorm",
        mlp="swiglu",
        bias=False,
        tie_embeddings=False,
        init_std=0.1,
        moe=MoEConfig(**{"num_experts": 4, "top_k": 2, **moe}),
    )
    model = GPT(cfg)
    with torch.no_grad():
        for m in model.moe_layers:
            m.router.weight.normal_(0.0, 0.5)  # distinct routing choices
    return model.eval()


@pytest.mark.parametrize(
    "moe, arch",
    [({}, "mixtral"), ({"shared_experts": 1, "shared_gate": True, "first_dense": 1, "normalize": False}, "qwen2_moe")],
)
def test_genlab_to_hf_loads_in_transformers_with_same_logits_and_text(tmp_path, moe, arch):
    ours = genlab_moe(**moe)
    convert.write_hf_moe(ours, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == arch
    theirs = hf_load(tmp_path / "out")
    assert type(theirs).__name__ == convert.ARCHITECTURES[arch]
    assert_same_model(ours, theirs)


@pytest.mark.parametrize("make", [hf_mixtral, hf_qwen])
def test_round_trip_hf_genlab_hf_is_exact_and_the_fused_layout_reads_the_same(tmp_path, make):
    path = make(tmp_path / "hf")
    ours = convert.load_hf_moe(path)
    convert.write_hf_moe(ours, tmp_path / "back")
    a, b = load_file(str(path / "model.safetensors")), load_file(str(tmp_path / "back" / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fused = hf_load(path).state_dict()  # transformers' in-memory layout: experts.gate_up_proj (E, 2H, C)
    kind = json.loads((path / "config.json").read_text())["model_type"]
    state = convert.hf_state_to_genlab(fused, ours.config, kind)
    for k, t in ours.state_dict().items():
        assert torch.equal(state[k], t), k


@pytest.mark.parametrize(
    "make, kw, words",
    [
        (hf_qwen, {"qkv_bias": True}, "qkv_bias=true"),
        (hf_qwen, {"mlp_only_layers": [1]}, "mlp_only_layers=[1]"),
        (hf_mixtral, {"sliding_window": 16}, "sliding_window=16"),
        (hf_mixtral, {"router_jitter_noise": 0.1}, "router_jitter_noise=0.1"),
    ],
)
def test_hf_options_genlab_cannot_run_are_one_line_errors(tmp_path, make, kw, words):
    path = make(tmp_path / "hf", **kw)
    with pytest.raises(ConfigError) as e:
        convert.load_hf_moe(path)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "moe, words",
    [
        ({"bias_balancing": True}, "bias_balancing"),
        ({"router": "sigmoid"}, "router='softmax'"),
        ({"shared_experts": 1}, "shared_gate=true"),
        ({"every": 2}, "moe.every=1"),
    ],
)
def test_genlab_configs_neither_architecture_expresses_are_refused(tmp_path, moe, words):
    with pytest.raises(ConfigError) as e:
        convert.write_hf_moe(genlab_moe(**moe), tmp_path / "out")
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    dense = dataclasses.replace(genlab_moe().config, moe=MoEConfig())
    with pytest.raises(ConfigError, match="no MoE layers"):
        convert.genlab_config_to_hf(dense)
