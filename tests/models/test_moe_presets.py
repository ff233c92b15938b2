"""MoE presets: published shapes, parameter counts equal to what transformers builds, total and active."""

import os

import pytest
import torch
from test_cli import genlab

from genlab.core.registry import preset
from genlab.models.gpt import GPT

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")


def counts(name: str) -> tuple[int, int]:
    """(total, active per token) of a preset, on the meta device."""
    with torch.device("meta"):
        model = GPT(preset(name))
    total = sum(p.numel() for p in model.parameters())
    return total, total - sum(m.inactive_params() for m in model.moe_layers)


def hf_count(cls, cfg) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in cls(cfg).parameters())


def test_mixtral_preset_counts_what_transformers_builds_and_the_published_totals():
    cfg = preset("mixtral-8x7b")
    hf = transformers.MixtralConfig(max_position_embeddings=cfg.block_size)  # the defaults are Mixtral 8x7B
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads, hf.num_key_value_heads) == (
        cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_kv_head)  # fmt: skip
    assert (hf.intermediate_size, hf.num_local_experts, hf.num_experts_per_tok, hf.vocab_size) == (
        int(cfg.mlp_ratio * cfg.n_embd), cfg.moe.num_experts, cfg.moe.top_k, cfg.vocab_size)  # fmt: skip
    assert hf.rope_parameters["rope_theta"] == cfg.rope_theta and hf.rms_norm_eps == cfg.norm_eps
    total, active = counts("mixtral-8x7b")
    assert total == hf_count(transformers.MixtralForCausalLM, hf)
    assert round(total / 1e9, 1) == 46.7 and round(active / 1e9, 1) == 12.9  # Jiang et al. 2024


def test_deepseek_moe_preset_counts_what_transformers_builds_and_the_published_totals():
    """DeepSeekMoE (v1) is not in transformers; Qwen2-MoE expresses the same shape (dense first
    layer, 64 routed experts of 1408, a shared FFN of 2 x 1408) plus a shared-expert gate of
    2048 weights per MoE layer that DeepSeekMoE does not have."""
    cfg = preset("deepseek-moe-16b")
    hf = transformers.Qwen2MoeConfig(
        vocab_size=102400, hidden_size=2048, intermediate_size=10944, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=16, moe_intermediate_size=1408, shared_expert_intermediate_size=2 * 1408,
        num_experts=64, num_experts_per_tok=6, mlp_only_layers=[0], qkv_bias=False, tie_word_embeddings=False,
        max_position_embeddings=4096,
    )  # fmt: skip
    total, active = counts("deepseek-moe-16b")
    assert total == hf_count(transformers.Qwen2MoeForCausalLM, hf) - 27 * 2048
    assert round(total / 1e9, 1) == 16.4 and round(active / 1e9, 1) == 2.8  # Dai et al. 2024, Table 3
    assert cfg.moe.first_dense == 1 and not cfg.moe.normalize


def test_cpu_moe_presets_keep_the_active_width_of_their_dense_twin():
    dense, _ = counts("gpt-char")
    total, active = counts("gpt-moe-char")
    routers = 4 * 8 * 128  # 4 layers of an (E, C) router
    expert_out_bias = 4 * 128  # two experts' output biases vs one dense output bias
    assert active == dense + routers + expert_out_bias and total > 2.5 * dense


def test_params_cli_prints_total_and_active(capsys):
    code, out, _ = genlab("params", "mixtral-8x7b", capsys=capsys)
    assert code == 0 and "total: 46,702,792,704 (46.70B)" in out
    assert "active per token: 12,879,925,248 (12.88B): 32 MoE layers, top-2 of 8 routed experts" in out
    code, out, _ = genlab("params", "gpt-micro", "moe.num_experts=4", "moe.top_k=1", capsys=capsys)
    assert code == 0 and "top-1 of 4 routed experts" in out
    code, out, _ = genlab("params", "gpt2", capsys=capsys)
    assert code == 0 and "active per token" not in out
