"""Mixtral and Qwen2-MoE: Hugging Face checkpoints <-> genlab :class:`~genlab.models.gpt.GPT`, both directions.

Both are Llama-style decoders (RoPE in the rotate-half layout genlab uses, RMSNorm, grouped-query
attention without biases, SwiGLU FFNs, untied head) whose FFNs are mixtures of experts:

- ``MixtralForCausalLM`` (Jiang et al. 2024, arXiv:2401.04088): every layer routes each token to
  the top-2 of 8 experts, gates = softmax over all experts, kept top-k, renormalised. genlab:
  ``moe.router="softmax"``, ``moe.normalize=True``, no shared experts.
- ``Qwen2MoeForCausalLM`` (Qwen1.5-MoE): top-k of a softmax, renormalised only with
  ``norm_topk_prob``, plus one shared expert of its own width whose output is scaled by
  sigmoid(x w_s). genlab: ``moe.shared_experts=1``, ``moe.shared_hidden``, ``moe.shared_gate=True``;
  its dense layers (``mlp_only_layers`` = the first k) are ``moe.first_dense=k``,
  ``decoder_sparse_step`` is ``moe.every``. genlab's attention has one bias switch for q/k/v and
  the output, so ``qkv_bias`` must be false.

Key map (i = layer, e = expert; genlab keeps q, k, v fused and each expert stack as one tensor):

    genlab                              Hugging Face (model.safetensors as save_pretrained writes it)
    tok_emb.weight                      model.embed_tokens.weight
    blocks.i.ln1.weight                 model.layers.i.input_layernorm.weight
    blocks.i.attn.qkv.weight            model.layers.i.self_attn.{q,k,v}_proj.weight, concatenated
    blocks.i.attn.proj.weight           model.layers.i.self_attn.o_proj.weight
    blocks.i.ln2.weight                 model.layers.i.post_attention_layernorm.weight
    blocks.i.mlp.router.weight          M.gate.weight                                  (E, C)
    blocks.i.mlp.experts.fc.weight[e]   [M.experts.e.w1 ; M.experts.e.w3]^T   (gate ; up, (C, 2H))
    blocks.i.mlp.experts.proj.weight[e] M.experts.e.w2^T                                (H, C)
    blocks.i.mlp.shared.fc.weight       M.shared_expert.{gate,up}_proj.weight, concatenated
    blocks.i.mlp.shared.proj.weight     M.shared_expert.down_proj.weight
    blocks.i.mlp.shared_gate.weight     M.shared_expert_gate.weight                    (1, C)
    blocks.i.mlp.fc/proj.weight         model.layers.i.mlp.{gate,up}/down_proj.weight  (dense layers)
    ln_f.weight                         model.norm.weight
    head.weight                         lm_head.weight     (not stored when tied)

M is ``model.layers.i.block_sparse_moe`` for Mixtral, ``model.layers.i.mlp`` for Qwen2-MoE; Qwen2-MoE
names the expert matrices gate_proj / up_proj / down_proj instead of w1 / w3 / w2. The fused layout
transformers keeps in memory (``M.experts.gate_up_proj`` (E, 2H, C), ``M.experts.down_proj``
(E, C, H), M = ``model.layers.i.mlp``) is read too.

Tier 2: imports genlab.core, genlab.models, torch, safetensors and json; never ``transformers``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.layers.moe import MoEConfig
from genlab.models.convert.gpt2 import CONFIG_FILE, WEIGHTS_FILE, read_hf_config, read_hf_weights
from genlab.models.gpt import GPT, GPTConfig

ARCHITECTURES = {"mixtral": "MixtralForCausalLM", "qwen2_moe": "Qwen2MoeForCausalLM"}
#: Per-expert matrix names: (gate, up, down) and the module holding the experts.
_EXPERT_NAMES = {
    "mixtral": (("w1", "w3", "w2"), "block_sparse_moe"),
    "qwen2_moe": (("gate_proj", "up_proj", "down_proj"), "mlp"),
}


# --- configs ---------------------------------------------------------------------------


def _ratio(hidden: int, dim: int) -> float:
    """An mlp_ratio with int(ratio * dim) == hidden (genlab's dense width)."""
    r = hidden / dim
    return r if int(r * dim) == hidden else math.nextafter(r, math.inf)


def _get(cfg: dict, key: str, where: str):
    if cfg.get(key) is None:
        raise ConfigError(f"{where} has no '{key}': not a complete {cfg.get('model_type')} config")
    return cfg[key]


def _rope_theta(cfg: dict, where: str) -> float:
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise ConfigError(f"{where}: rope_type={kind!r} is not supported; genlab's RoPE is the default kind")
    return float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def hf_config_to_genlab(cfg: dict, where: str = CONFIG_FILE) -> GPTConfig:
    """A Mixtral or Qwen2-MoE ``config.json`` (as a dict) -> :class:`GPTConfig`; ConfigError (one line)
    for another architecture or an option genlab cannot run."""
    kind = cfg.get("model_type")
    if kind not in ARCHITECTURES:
        raise ConfigError(
            f"{where}: this is a {kind or 'unknown'} checkpoint; genlab converts {' / '.join(ARCHITECTURES)} here"
        )
    C, H = _get(cfg, "hidden_size", where), _get(cfg, "num_attention_heads", where)
    if cfg.get("head_dim") not in (None, C // H):
        raise ConfigError(f"{where}: head_dim={cfg['head_dim']} != hidden_size / num_attention_heads = {C // H}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"{where}: hidden_act={cfg['hidden_act']!r} is not supported; genlab's SwiGLU uses silu")
    refuse = [
        ("router_jitter_noise", 0.0, "multiplies expert inputs by training-time noise"),
        ("use_sliding_window", False, "uses sliding-window attention"),
        ("qkv_bias", False, "puts biases on q/k/v but not on the output projection"),
    ]
    for key, ok, what in refuse:
        if cfg.get(key, ok) not in (ok, None):
            raise ConfigError(f"{where}: {key}={json.dumps(cfg[key])} ({what}) is not supported by genlab's GPT")
    if kind == "mixtral" and cfg.get("sliding_window") is not None:
        raise ConfigError(f"{where}: sliding_window={cfg['sliding_window']} is not supported by genlab's GPT")
    layers = _get(cfg, "num_hidden_layers", where)
    dense = _get(cfg, "intermediate_size", where)
    if kind == "mixtral":
        moe = MoEConfig(
            num_experts=_get(cfg, "num_local_experts", where),
            top_k=_get(cfg, "num_experts_per_tok", where),
            expert_hidden=dense,
            aux_loss_coef=float(cfg.get("router_aux_loss_coef", 0.01)),
        )
    else:
        only = list(cfg.get("mlp_only_layers") or [])
        if only != list(range(len(only))):
            raise ConfigError(
                f"{where}: mlp_only_layers={only} is not supported; genlab keeps the first k layers dense"
            )
        shared = _get(cfg, "shared_expert_intermediate_size", where)
        moe = MoEConfig(
            num_experts=_get(cfg, "num_experts", where),
            top_k=_get(cfg, "num_experts_per_tok", where),
            expert_hidden=_get(cfg, "moe_intermediate_size", where),
            shared_experts=1,
            shared_hidden=shared,
            shared_gate=True,
            every=int(cfg.get("decoder_sparse_step", 1)),
            first_dense=len(only),
            normalize=bool(cfg.get("norm_topk_prob", False)),
            aux_loss_coef=float(cfg.get("router_aux_loss_coef", 0.01)),
        )
    try:
        return GPTConfig(
            vocab_size=_get(cfg, "vocab_size", where),
            block_size=_get(cfg, "max_position_embeddings", where),
            n_layer=layers,
            n_head=H,
            n_kv_head=cfg.get("num_key_value_heads") or H,
            n_embd=C,
            mlp_ratio=_ratio(dense, C),
            dropout=float(cfg.get("attention_dropout", 0.0)),
            bias=False,
            pos="rope",
            mlp="swiglu",
            norm="rmsnorm",
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=_rope_theta(cfg, where),
            init_std=float(cfg.get("initializer_range", 0.02)),
            moe=moe,
        )
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e


def architecture_of(cfg: GPTConfig) -> str:
    """The transformers model_type that can hold this genlab config: "mixtral" or "qwen2_moe";
    ConfigError (naming what does not fit) otherwise."""
    m = cfg.moe
    needs = (("pos", "rope"), ("norm", "rmsnorm"), ("mlp", "swiglu"), ("bias", False))
    for field, value in needs:
        if getattr(cfg, field) != value:
            raise ConfigError(
                f"{field}={getattr(cfg, field)!r} cannot be written as Mixtral / Qwen2-MoE, "
                f"which need {field}={value!r}"
            )
    if not m.enabled:
        raise ConfigError("this GPT has no MoE layers (moe.num_experts=0): write it as another architecture")
    if m.router != "softmax" or m.bias_balancing:
        raise ConfigError("moe.router='softmax' without bias_balancing is what Mixtral / Qwen2-MoE route by")
    if m.shared_width(int(cfg.mlp_ratio * cfg.n_embd)):
        if not m.shared_gate:
            raise ConfigError(
                "ungated shared experts (DeepSeekMoE) cannot be written as Qwen2-MoE, which gates its "
                "shared expert: set moe.shared_gate=true"
            )
        return "qwen2_moe"
    if m.shared_gate or m.every != 1 or m.first_dense or not m.normalize:
        raise ConfigError(
            "Mixtral routes every layer with renormalised gates and no shared expert: "
            "set moe.every=1, moe.first_dense=0, moe.normalize=true"
        )
    return "mixtral"


def genlab_config_to_hf(
    cfg: GPTConfig, dtype: str = "float32", bos_id: int | None = None, eos_id: int | None = None
) -> dict:
    """:class:`GPTConfig` -> a complete Mixtral or Qwen2-MoE ``config.json`` dict."""
    kind = architecture_of(cfg)
    m, dense = cfg.moe, int(cfg.mlp_ratio * cfg.n_embd)
    out = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.block_size,
        "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.n_embd // cfg.n_head,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_theta": cfg.rope_theta, "rope_type": "default"},
        "initializer_range": cfg.init_std,
        "attention_dropout": cfg.dropout,
        "num_experts_per_tok": m.routed_top_k,
        "router_aux_loss_coef": m.aux_loss_coef,
        "output_router_logits": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "dtype": dtype,
    }
    if kind == "mixtral":
        out.update(
            intermediate_size=m.expert_width(dense),
            num_local_experts=m.routed_experts,
            sliding_window=None,
            router_jitter_noise=0.0,
        )
    else:
        out.update(
            intermediate_size=dense,
            moe_intermediate_size=m.expert_width(dense),
            num_experts=m.routed_experts,
            shared_expert_intermediate_size=m.shared_width(dense),
            norm_topk_prob=m.normalize,
            decoder_sparse_step=m.every,
            mlp_only_layers=list(range(m.first_dense)),
            qkv_bias=False,
            use_sliding_window=False,
        )
    return out


# --- state dicts -----------------------------------------------------------------------


def _pop(found: dict, key: str, where: str) -> torch.Tensor:
    if key not in found:
        raise CheckpointError(
            f"{where}the weights do not match config.json: missing '{key}' (weights of another model?)"
        )
    return found.pop(key)


def hf_state_to_genlab(
    tensors: dict[str, torch.Tensor], cfg: GPTConfig, kind: str, where: str = ""
) -> dict[str, torch.Tensor]:
    """Hugging Face Mixtral / Qwen2-MoE tensors -> genlab ``GPT`` state dict; CheckpointError
    (one line) on a mismatch."""
    where = f"{where}: " if where else ""
    found = dict(tensors)
    (g_name, u_name, d_name), moe_mod = _EXPERT_NAMES[kind]
    out = {
        "tok_emb.weight": _pop(found, "model.embed_tokens.weight", where),
        "ln_f.weight": _pop(found, "model.norm.weight", where),
    }
    if cfg.tie_embeddings:
        found.pop("lm_head.weight", None)
    else:
        out["head.weight"] = _pop(found, "lm_head.weight", where)
    for i in range(cfg.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        out[q + "ln1.weight"] = _pop(found, p + "input_layernorm.weight", where)
        out[q + "ln2.weight"] = _pop(found, p + "post_attention_layernorm.weight", where)
        qkv = [_pop(found, p + f"self_attn.{n}_proj.weight", where) for n in "qkv"]
        out[q + "attn.qkv.weight"] = torch.cat(qkv)
        out[q + "attn.proj.weight"] = _pop(found, p + "self_attn.o_proj.weight", where)
        if not cfg.moe.is_moe_layer(i):
            gate, up = _pop(found, p + "mlp.gate_proj.weight", where), _pop(found, p + "mlp.up_proj.weight", where)
            out[q + "mlp.fc.weight"] = torch.cat([gate, up])
            out[q + "mlp.proj.weight"] = _pop(found, p + "mlp.down_proj.weight", where)
            continue
        m = p + (moe_mod if p + f"{moe_mod}.gate.weight" in found else "mlp") + "."
        out[q + "mlp.router.weight"] = _pop(found, m + "gate.weight", where)
        if m + "experts.gate_up_proj" in found:  # transformers' fused in-memory layout
            out[q + "mlp.experts.fc.weight"] = found.pop(m + "experts.gate_up_proj").transpose(1, 2)  # (E, C, 2H)
            out[q + "mlp.experts.proj.weight"] = _pop(found, m + "experts.down_proj", where).transpose(
                1, 2
            )  # (E, H, C)
        else:
            fc, proj = [], []
            for e in range(cfg.moe.routed_experts):
                x = f"{m}experts.{e}."
                gate, up = _pop(found, x + f"{g_name}.weight", where), _pop(found, x + f"{u_name}.weight", where)
                fc.append(torch.cat([gate, up]).t())  # (C, 2H)
                proj.append(_pop(found, x + f"{d_name}.weight", where).t())  # (H, C)
            out[q + "mlp.experts.fc.weight"], out[q + "mlp.experts.proj.weight"] = torch.stack(fc), torch.stack(proj)
        if kind == "qwen2_moe":
            s = m + "shared_expert."
            gate, up = _pop(found, s + "gate_proj.weight", where), _pop(found, s + "up_proj.weight", where)
            out[q + "mlp.shared.fc.weight"] = torch.cat([gate, up])
            out[q + "mlp.shared.proj.weight"] = _pop(found, s + "down_proj.weight", where)
            out[q + "mlp.shared_gate.weight"] = _pop(found, m + "shared_expert_gate.weight", where)
    rest = [k for k in found if not k.endswith("rotary_emb.inv_freq")]
    if rest:
        raise CheckpointError(
            f"{where}unexpected weights {rest[:3]}{'...' if len(rest) > 3 else ''} "
            "for config.json (weights of another config?)"
        )
    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in GPT(cfg).state_dict().items()}
    for key, t in out.items():
        if tuple(t.shape) != shapes[key]:
            raise CheckpointError(f"{where}'{key}' comes out as {tuple(t.shape)} but config.json implies {shapes[key]}")
    return {k: t.contiguous() for k, t in out.items()}


def genlab_state_to_hf(state: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """genlab ``GPT`` state dict -> Hugging Face tensors in the per-expert layout save_pretrained writes."""
    kind = architecture_of(cfg)
    (g_name, u_name, d_name), moe_mod = _EXPERT_NAMES[kind]
    C, D = cfg.n_embd, cfg.n_embd // cfg.n_head
    s = {k: t.detach().cpu() for k, t in state.items()}
    out = {"model.embed_tokens.weight": s["tok_emb.weight"], "model.norm.weight": s["ln_f.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = s["head.weight"]
    for i in range(cfg.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        out[p + "input_layernorm.weight"] = s[q + "ln1.weight"]
        out[p + "post_attention_layernorm.weight"] = s[q + "ln2.weight"]
        wq, wk, wv = s[q + "attn.qkv.weight"].split((C, cfg.kv_heads * D, cfg.kv_heads * D))
        out.update(
            {p + "self_attn.q_proj.weight": wq, p + "self_attn.k_proj.weight": wk, p + "self_attn.v_proj.weight": wv}
        )
        out[p + "self_attn.o_proj.weight"] = s[q + "attn.proj.weight"]
        if not cfg.moe.is_moe_layer(i):
            gate, up = s[q + "mlp.fc.weight"].chunk(2)
            out.update({p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up})
            out[p + "mlp.down_proj.weight"] = s[q + "mlp.proj.weight"]
            continue
        m = p + moe_mod + "."
        out[m + "gate.weight"] = s[q + "mlp.router.weight"]
        for e, (fc, proj) in enumerate(zip(s[q + "mlp.experts.fc.weight"], s[q + "mlp.experts.proj.weight"])):
            gate, up = fc.t().chunk(2)  # (H, C) each
            x = f"{m}experts.{e}."
            out.update({x + f"{g_name}.weight": gate, x + f"{u_name}.weight": up, x + f"{d_name}.weight": proj.t()})
        if kind == "qwen2_moe":
            gate, up = s[q + "mlp.shared.fc.weight"].chunk(2)
            out.update({m + "shared_expert.gate_proj.weight": gate, m + "shared_expert.up_proj.weight": up})
            out[m + "shared_expert.down_proj.weight"] = s[q + "mlp.shared.proj.weight"]
            out[m + "shared_expert_gate.weight"] = s[q + "mlp.shared_gate.weight"]
    return {k: t.contiguous().clone() for k, t in out.items()}


# --- files -----------------------------------------------------------------------------


def load_hf_moe(hf_dir: Path) -> GPT:
    """A Hugging Face Mixtral or Qwen2-MoE folder -> genlab GPT in eval mode (config checked first)."""
    hf_dir = Path(hf_dir)
    raw = read_hf_config(hf_dir)
    cfg = hf_config_to_genlab(raw, where=str(hf_dir / CONFIG_FILE))
    state = hf_state_to_genlab(read_hf_weights(hf_dir), cfg, raw["model_type"], where=str(hf_dir))
    model = GPT(cfg)
    model.load_state_dict(state, strict=not cfg.tie_embeddings)  # a tied head.weight is tok_emb
    return model.eval()


def write_hf_moe(model: GPT, out_dir: Path, bos_id: int | None = None, eos_id: int | None = None) -> list[Path]:
    """Write ``config.json`` + ``model.safetensors`` (Mixtral or Qwen2-MoE, by :func:`architecture_of`)."""
    out_dir = Path(out_dir)
    cfg = model.config
    dtype = str(model.tok_emb.weight.dtype).removeprefix("torch.")
    hf_cfg = genlab_config_to_hf(cfg, dtype=dtype, bos_id=bos_id, eos_id=eos_id)  # refuses before writing
    tensors = genlab_state_to_hf(model.state_dict(), cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / CONFIG_FILE, out_dir / WEIGHTS_FILE
    config_path.write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    return [config_path, weights_path]
