"""GPT-2: Hugging Face checkpoints <-> genlab :class:`~genlab.models.gpt.GPT`, both directions.

Radford et al. 2019. A Hugging Face GPT-2 folder holds ``config.json`` and ``model.safetensors``
(or ``pytorch_model.bin``, possibly sharded with an ``*.index.json``). GPT-2 is genlab's default
GPT (learned positions, pre-norm LayerNorm, biases, tied head), so the conversion is a renaming
plus one transpose: Hugging Face keeps GPT-2's projections as ``Conv1D``, which computes

    y = x W + b      with W stored (in, out),

the transpose of ``nn.Linear``'s (out, in). The fused ``c_attn`` holds q, k, v along its output
dimension in that order, as genlab's ``qkv`` does, so ``qkv.weight = c_attn.weight^T``.

Key map (i = layer; ``transformer.`` is absent in ``GPT2Model`` checkpoints and accepted either way):

    genlab                          Hugging Face                           transposed
    tok_emb.weight                  transformer.wte.weight
    pos_emb.weight                  transformer.wpe.weight
    blocks.i.ln1.{weight,bias}      transformer.h.i.ln_1.{weight,bias}
    blocks.i.attn.qkv.{weight,bias} transformer.h.i.attn.c_attn.{weight,bias}   weight
    blocks.i.attn.proj.*            transformer.h.i.attn.c_proj.*                weight
    blocks.i.ln2.*                  transformer.h.i.ln_2.*
    blocks.i.mlp.fc.*               transformer.h.i.mlp.c_fc.*                   weight
    blocks.i.mlp.proj.*             transformer.h.i.mlp.c_proj.*                 weight
    ln_f.*                          transformer.ln_f.*
    head.weight                     lm_head.weight      only when untied (tied: not stored)

Old checkpoints also store each layer's causal-mask buffers ``attn.bias`` / ``attn.masked_bias``;
they are not weights and are skipped.

Tier 2: imports genlab.core, genlab.models, torch, safetensors and json; never ``transformers``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.models.gpt import GPT, GPTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Where weights are looked for, in order: safetensors first, pickles (loaded with weights_only) last.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")

#: Hugging Face ``activation_function`` -> genlab ``mlp``. gelu_new, gelu_pytorch_tanh and
#: gelu_fast are the same tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
HF_TO_GENLAB_ACTIVATION = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}
#: genlab ``mlp`` -> the name GPT-2 configs use.
GENLAB_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}

#: GPT-2 config options genlab's GPT does not implement: (key, value genlab cannot run, what it does).
UNSUPPORTED = (
    ("scale_attn_by_inverse_layer_idx", True, "scales layer l's attention scores by 1/(l+1)"),
    ("reorder_and_upcast_attn", True, "reorders and upcasts the attention product"),
    ("scale_attn_weights", False, "leaves attention scores unscaled by 1/sqrt(D)"),
    ("add_cross_attention", True, "adds encoder-decoder cross-attention"),
)

# Per-layer modules: genlab name, Hugging Face name, weight stored transposed (Conv1D).
_LAYER = (
    ("ln1", "ln_1", False),
    ("attn.qkv", "attn.c_attn", True),
    ("attn.proj", "attn.c_proj", True),
    ("ln2", "ln_2", False),
    ("mlp.fc", "mlp.c_fc", True),
    ("mlp.proj", "mlp.c_proj", True),
)
# The causal-mask buffers of old checkpoints: h.{i}.attn.bias / h.{i}.attn.masked_bias.
_BUFFER = re.compile(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$")
_PREFIX = "transformer."
_GPT2_EOS = 50256  # <|endoftext|> in GPT-2's 50,257-token vocabulary


# --- configs ---------------------------------------------------------------------------


def check_architecture(cfg: dict, where: str = CONFIG_FILE) -> None:
    """Refuse a config.json that is not a GPT-2 language model, naming what it is."""
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    if model_type is None and archs and all(a in ARCHITECTURES for a in archs):
        model_type = "gpt2"  # very old configs name only the architecture
    if model_type != "gpt2":
        name = model_type or (archs[0] if archs else "unknown (no model_type)")
        raise ConfigError(f"{where}: this is a {name} checkpoint; genlab converts gpt2 only")
    other = [a for a in archs if a not in ARCHITECTURES]
    if other:
        raise ConfigError(f"{where}: this is a {other[0]} checkpoint; genlab converts {' / '.join(ARCHITECTURES)} only")


def _int_field(cfg: dict, *names: str, where: str) -> int:
    for name in names:
        value = cfg.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: '{name}' must be a positive integer, got {value!r}")
            return value
    raise ConfigError(f"{where} has no '{names[0]}': not a complete GPT-2 config")


def hf_config_to_genlab(cfg: dict, where: str = CONFIG_FILE) -> GPTConfig:
    """A Hugging Face GPT-2 ``config.json`` (as a dict) -> :class:`GPTConfig`.

    ConfigError (one line) for another architecture or an option genlab cannot run.
    """
    check_architecture(cfg, where)
    for key, bad, what in UNSUPPORTED:
        if key in cfg and cfg[key] == bad:
            raise ConfigError(f"{where}: {key}={json.dumps(bad)} ({what}) is not supported by genlab's GPT")
    act = cfg.get("activation_function", "gelu_new")
    if act not in HF_TO_GENLAB_ACTIVATION:
        raise ConfigError(
            f"{where}: activation_function={act!r} is not supported; genlab runs {sorted(HF_TO_GENLAB_ACTIVATION)}"
        )
    n_embd = _int_field(cfg, "n_embd", "hidden_size", where=where)
    n_head = _int_field(cfg, "n_head", "num_attention_heads", where=where)
    n_layer = _int_field(cfg, "n_layer", "num_hidden_layers", where=where)
    block_size = _int_field(cfg, "n_positions", "max_position_embeddings", "n_ctx", where=where)
    vocab_size = _int_field(cfg, "vocab_size", where=where)
    if n_embd % n_head:
        raise ConfigError(f"{where}: n_embd={n_embd} is not divisible by n_head={n_head}")
    n_inner = cfg.get("n_inner") or 4 * n_embd
    mlp_ratio = n_inner / n_embd
    if int(mlp_ratio * n_embd) != n_inner:  # genlab's hidden width is int(mlp_ratio * n_embd)
        mlp_ratio = math.nextafter(mlp_ratio, math.inf)
    if int(mlp_ratio * n_embd) != n_inner:
        raise ConfigError(f"{where}: n_inner={n_inner} cannot be written as mlp_ratio * n_embd={n_embd}")
    return GPTConfig(
        vocab_size=vocab_size,
        block_size=block_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        mlp_ratio=mlp_ratio,
        dropout=float(cfg.get("resid_pdrop", 0.1)),  # genlab has one dropout rate for all three
        bias=True,
        pos="learned",
        mlp=HF_TO_GENLAB_ACTIVATION[act],
        norm="layernorm",
        attention="sdpa",
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        init_std=float(cfg.get("initializer_range", 0.02)),
    )


def genlab_config_to_hf(cfg: GPTConfig, eos_id: int | None = None, dtype: str = "float32") -> dict:
    """:class:`GPTConfig` -> a complete GPT-2 ``config.json`` dict (``GPT2LMHeadModel``).

    ``eos_id`` is the tokenizer's end-of-text id (bos and eos in GPT-2); without one, a
    50,257-token vocabulary gets GPT-2's 50256 and any other none. ConfigError (naming the
    field and the value GPT-2 needs) for what GPT-2 cannot express.
    """
    needs = (
        ("pos", "learned", "learned position embeddings"),
        ("norm", "layernorm", "LayerNorm"),
        ("bias", True, "biases in every linear layer and norm"),
    )
    for field, value, what in needs:
        if getattr(cfg, field) != value:
            raise ConfigError(
                f"{field}={getattr(cfg, field)!r} cannot be written as GPT-2, which needs {field}={value!r} ({what})"
            )
    if cfg.kv_heads != cfg.n_head:
        raise ConfigError(
            f"n_kv_head={cfg.n_kv_head} cannot be written as GPT-2, which needs n_kv_head=n_head={cfg.n_head} "
            "(Hugging Face GPT-2 has no grouped-query attention)"
        )
    if cfg.mlp not in GENLAB_TO_HF_ACTIVATION:
        raise ConfigError(
            f"mlp={cfg.mlp!r} cannot be written as GPT-2, which needs mlp in {sorted(GENLAB_TO_HF_ACTIVATION)}"
        )
    n_inner = int(cfg.mlp_ratio * cfg.n_embd)
    if eos_id is None and cfg.vocab_size == _GPT2_EOS + 1:
        eos_id = _GPT2_EOS
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None if n_inner == 4 * cfg.n_embd else n_inner,
        "activation_function": GENLAB_TO_HF_ACTIVATION[cfg.mlp],
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.norm_eps,
        "initializer_range": cfg.init_std,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "use_cache": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "tie_word_embeddings": cfg.tie_embeddings,
        "dtype": dtype,
    }


# --- state dicts -----------------------------------------------------------------------


def key_map(cfg: GPTConfig) -> list[tuple[str, str, bool]]:
    """(genlab key, Hugging Face key, transposed) for every weight of a GPT-2-shaped model."""
    rows = [("tok_emb.weight", "transformer.wte.weight", False), ("pos_emb.weight", "transformer.wpe.weight", False)]
    for i in range(cfg.n_layer):
        for ours, theirs, conv in _LAYER:
            rows.append((f"blocks.{i}.{ours}.weight", f"transformer.h.{i}.{theirs}.weight", conv))
            rows.append((f"blocks.{i}.{ours}.bias", f"transformer.h.{i}.{theirs}.bias", False))
    rows += [("ln_f.weight", "transformer.ln_f.weight", False), ("ln_f.bias", "transformer.ln_f.bias", False)]
    if not cfg.tie_embeddings:
        rows.append(("head.weight", "lm_head.weight", False))
    return rows


def _expected_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(t.shape) for k, t in GPT(cfg).state_dict().items()}


def hf_state_to_genlab(tensors: dict[str, torch.Tensor], cfg: GPTConfig, where: str = "") -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensors -> genlab ``GPT`` state dict; CheckpointError (one line) on any mismatch."""
    where = f"{where}: " if where else ""
    found: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if _BUFFER.search(key):
            continue
        if key == "lm_head.weight" and cfg.tie_embeddings:
            continue  # the head is the token embedding
        if not key.startswith(_PREFIX) and key != "lm_head.weight":
            key = _PREFIX + key  # a GPT2Model checkpoint
        found[key] = t
    rows = key_map(cfg)
    missing = [theirs for _, theirs, _ in rows if theirs not in found]
    known = {theirs for _, theirs, _ in rows}
    unexpected = [k for k in found if k not in known]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}the weights do not match config.json: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''} (weights of another model or config?)"
        )
    shapes = _expected_shapes(cfg)
    out = {}
    for ours, theirs, conv in rows:
        t = found[theirs]
        want = shapes[ours][::-1] if conv else shapes[ours]
        if tuple(t.shape) != want:
            raise CheckpointError(
                f"{where}'{theirs}' has shape {tuple(t.shape)} but config.json implies {want} "
                "(weights of another config?)"
            )
        out[ours] = (t.t() if conv else t).contiguous()
    return out


def genlab_state_to_hf(state: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """genlab ``GPT`` state dict -> Hugging Face ``GPT2LMHeadModel`` tensors (tied head not stored)."""
    out = {}
    for ours, theirs, conv in key_map(cfg):
        if ours not in state:
            raise CheckpointError(f"the genlab state dict has no '{ours}': not a GPT-2-shaped model")
        t = state[ours].detach().cpu()
        out[theirs] = (t.t() if conv else t).contiguous().clone()
    return out


def gpt_from_hf_state(tensors: dict[str, torch.Tensor], cfg: GPTConfig, where: str = "") -> GPT:
    """A genlab GPT (eval mode, fp32) holding Hugging Face GPT-2 weights."""
    state = hf_state_to_genlab(tensors, cfg, where)
    model = GPT(cfg)
    model.load_state_dict(state, strict=False)  # keys checked above; a tied head.weight is tok_emb
    return model.eval()


# --- files -----------------------------------------------------------------------------


def read_hf_config(hf_dir: Path) -> dict:
    """``hf_dir/config.json`` as a dict; CheckpointError if there is none or it is not JSON."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise CheckpointError(f"{hf_dir} is not a directory: point to a Hugging Face model folder")
    path = hf_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{hf_dir} has no {CONFIG_FILE}: point to a Hugging Face model folder (save_pretrained)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a model config (expected a JSON object)")
    return data


def _load_one(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, ValueError, RuntimeError, EOFError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {path}: {msg} (truncated or not a weights file)") from e
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return tensors


def read_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face folder: model.safetensors, pytorch_model.bin, or their shards."""
    hf_dir = Path(hf_dir)
    for name in WEIGHT_FILES:
        path = hf_dir / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return _load_one(path)
        try:
            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{path} is not a shard index (no weight_map): {e}") from e
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (hf_dir / shard).is_file():
                raise CheckpointError(f"{path} names the shard {shard}, which is missing from {hf_dir}")
            tensors.update(_load_one(hf_dir / shard))
        return tensors
    raise CheckpointError(f"{hf_dir} holds no model weights: expected one of {', '.join(WEIGHT_FILES)}")


def load_hf_gpt2(hf_dir: Path) -> GPT:
    """A Hugging Face GPT-2 folder -> genlab GPT in eval mode (config checked before weights are read)."""
    hf_dir = Path(hf_dir)
    cfg = hf_config_to_genlab(read_hf_config(hf_dir), where=str(hf_dir / CONFIG_FILE))
    return gpt_from_hf_state(read_hf_weights(hf_dir), cfg, where=str(hf_dir))


def write_hf_gpt2(model: GPT, out_dir: Path, eos_id: int | None = None) -> list[Path]:
    """Write ``config.json`` + ``model.safetensors`` for ``model`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    cfg = model.config
    dtype = str(model.tok_emb.weight.dtype).removeprefix("torch.")
    hf_cfg = genlab_config_to_hf(cfg, eos_id=eos_id, dtype=dtype)  # refuses before writing anything
    tensors = genlab_state_to_hf(model.state_dict(), cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / CONFIG_FILE, out_dir / WEIGHTS_FILE
    config_path.write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    return [config_path, weights_path]
