"""ViT: Hugging Face ``ViTForImageClassification`` <-> genlab :class:`~genlab.models.vit.ViT`, both directions.

Dosovitskiy et al. 2020, arXiv:2010.11929. Hugging Face keeps q, k and v as three linear layers;
genlab fuses them into one ``qkv`` (queries, keys, values along the output dimension), so
``qkv.weight = cat(q.weight, k.weight, v.weight)`` and back by splitting in three. Everything
else is a renaming (i = layer; transformers >= 5 names shown, the older names are read too):

    genlab                          Hugging Face (>= 5)                      older transformers
    cls_token                       vit.embeddings.cls_token
    pos_emb                         vit.embeddings.position_embeddings
    patch.proj.*                    vit.embeddings.patch_embeddings.projection.*
    blocks.i.ln1.*                  vit.layers.i.layernorm_before.*          vit.encoder.layer.i.layernorm_before.*
    blocks.i.attn.qkv.*             vit.layers.i.attention.{q,k,v}_proj.*    ...attention.attention.{query,key,value}.*
    blocks.i.attn.proj.*            vit.layers.i.attention.o_proj.*          ...attention.output.dense.*
    blocks.i.ln2.*                  vit.layers.i.layernorm_after.*
    blocks.i.mlp.fc.*               vit.layers.i.mlp.fc1.*                   ...intermediate.dense.*
    blocks.i.mlp.proj.*             vit.layers.i.mlp.fc2.*                   ...output.dense.*
    ln_f.*                          vit.layernorm.*
    head.*                          classifier.*

Hugging Face's ViT is genlab's ``pool="cls"``, ``pos="learned"``, ``mlp="gelu"``, no stem; other
configs raise a one-line ConfigError. Tier 2: imports genlab and torch, never ``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.models.vit import ViT, ViTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HF_ACT = {"gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}

# Per-layer renamings: genlab, transformers >= 5, older transformers.
_LAYER = (
    ("ln1", "layernorm_before", "layernorm_before"),
    ("attn.proj", "attention.o_proj", "attention.output.dense"),
    ("ln2", "layernorm_after", "layernorm_after"),
    ("mlp.fc", "mlp.fc1", "intermediate.dense"),
    ("mlp.proj", "mlp.fc2", "output.dense"),
)
_QKV = {"new": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
        "old": ("attention.attention.query", "attention.attention.key", "attention.attention.value")}  # fmt: skip
_TOP = (
    ("cls_token", "vit.embeddings.cls_token"),
    ("pos_emb", "vit.embeddings.position_embeddings"),
    ("patch.proj.weight", "vit.embeddings.patch_embeddings.projection.weight"),
    ("patch.proj.bias", "vit.embeddings.patch_embeddings.projection.bias"),
    ("ln_f.weight", "vit.layernorm.weight"),
    ("ln_f.bias", "vit.layernorm.bias"),
    ("head.weight", "classifier.weight"),
    ("head.bias", "classifier.bias"),
)


def hf_config_to_genlab(cfg: dict, where: str = CONFIG_FILE) -> ViTConfig:
    """A Hugging Face ViT ``config.json`` (as a dict) -> :class:`ViTConfig`."""
    if cfg.get("model_type") != "vit":
        raise ConfigError(f"{where}: this is a {cfg.get('model_type', 'unknown')} checkpoint; genlab converts vit here")
    act = cfg.get("hidden_act", "gelu")
    if act not in HF_ACT:
        raise ConfigError(f"{where}: hidden_act={act!r} is not supported; genlab runs {sorted(HF_ACT)}")
    if not cfg.get("qkv_bias", True):
        raise ConfigError(f"{where}: qkv_bias=false is not supported (genlab's ViT has biases on q, k, v)")
    d = cfg.get("hidden_size", 768)
    labels = cfg.get("id2label") or {}
    return ViTConfig(
        image_size=cfg.get("image_size", 224), patch_size=cfg.get("patch_size", 16),
        in_channels=cfg.get("num_channels", 3), n_classes=cfg.get("num_labels") or len(labels) or 2,
        n_layer=cfg.get("num_hidden_layers", 12), n_head=cfg.get("num_attention_heads", 12), n_embd=d,
        mlp_ratio=cfg.get("intermediate_size", 4 * d) / d, mlp=HF_ACT[act],
        dropout=cfg.get("hidden_dropout_prob", 0.0), norm_eps=cfg.get("layer_norm_eps", 1e-12),
        init_std=cfg.get("initializer_range", 0.02), pool="cls", pos="learned",
    )  # fmt: skip


def genlab_config_to_hf(cfg: ViTConfig) -> dict:
    """:class:`ViTConfig` -> a Hugging Face ``config.json`` dict for ``ViTForImageClassification``."""
    plain = not (cfg.stem or cfg.spt or cfg.lsa) and cfg.pool == "cls" and cfg.pos == "learned"
    if not plain or cfg.mlp not in ("gelu", "relu", "gelu_tanh"):
        raise ConfigError(
            f"Hugging Face's ViT has a class token, learned positions, no stem, SPT or LSA and a gelu/relu MLP; this "
            f"config has pool={cfg.pool}, pos={cfg.pos}, stem={cfg.stem or 'none'}, spt={cfg.spt}, lsa={cfg.lsa}, "
            f"mlp={cfg.mlp}"
        )
    hidden = int(cfg.mlp_ratio * cfg.n_embd)
    return {
        "model_type": "vit", "architectures": ["ViTForImageClassification"], "image_size": cfg.image_size,
        "patch_size": cfg.patch_size, "num_channels": cfg.in_channels, "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "intermediate_size": hidden,
        "hidden_act": {"gelu_tanh": "gelu_pytorch_tanh"}.get(cfg.mlp, cfg.mlp), "layer_norm_eps": cfg.norm_eps,
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout, "qkv_bias": cfg.bias,
        "initializer_range": cfg.init_std, "id2label": {str(i): f"LABEL_{i}" for i in range(cfg.n_classes)},
        "label2id": {f"LABEL_{i}": i for i in range(cfg.n_classes)},
    }  # fmt: skip


def _style(sd: dict) -> tuple[str, str]:
    """('new', 'vit.layers.') or ('old', 'vit.encoder.layer.') by the keys present."""
    if any(k.startswith("vit.encoder.layer.") for k in sd):
        return "old", "vit.encoder.layer."
    return "new", "vit.layers."


def hf_to_genlab(sd: dict[str, torch.Tensor], cfg: ViTConfig) -> dict[str, torch.Tensor]:
    """A Hugging Face ViTForImageClassification state dict -> genlab ViT's."""
    style, prefix = _style(sd)
    col = 2 if style == "old" else 1
    try:
        out = {g: sd[h] for g, h in _TOP}
        for i in range(cfg.n_layer):
            p = f"{prefix}{i}."
            for g, new, old in _LAYER:
                for t in ("weight", "bias"):
                    out[f"blocks.{i}.{g}.{t}"] = sd[p + (new, old)[col - 1] + "." + t]
            for t in ("weight", "bias"):
                out[f"blocks.{i}.attn.qkv.{t}"] = torch.cat([sd[f"{p}{name}.{t}"] for name in _QKV[style]])
    except KeyError as e:
        raise CheckpointError(f"not a ViTForImageClassification state dict with {cfg.n_layer} layers: no {e}") from None
    return out


def genlab_to_hf(sd: dict[str, torch.Tensor], cfg: ViTConfig) -> dict[str, torch.Tensor]:
    """A genlab ViT state dict -> Hugging Face ViTForImageClassification's (transformers >= 5 names)."""
    out = {h: sd[g] for g, h in _TOP}
    for i in range(cfg.n_layer):
        p = f"vit.layers.{i}."
        for g, new, _ in _LAYER:
            for t in ("weight", "bias"):
                out[p + new + "." + t] = sd[f"blocks.{i}.{g}.{t}"]
        for t in ("weight", "bias"):
            for name, part in zip(_QKV["new"], sd[f"blocks.{i}.attn.qkv.{t}"].chunk(3)):
                out[f"{p}{name}.{t}"] = part.contiguous()
    return out


def load_hf_vit(folder: str | Path) -> ViT:
    """A Hugging Face ViTForImageClassification folder (config.json + model.safetensors) -> a genlab ViT."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{folder} needs {CONFIG_FILE} and {WEIGHTS_FILE} (a Hugging Face ViT folder)")
    cfg = hf_config_to_genlab(json.loads((folder / CONFIG_FILE).read_text()), str(folder / CONFIG_FILE))
    model = ViT(cfg)
    model.load_state_dict(hf_to_genlab(load_file(str(folder / WEIGHTS_FILE)), cfg))
    return model.eval()


def save_hf_vit(model: ViT, folder: str | Path) -> Path:
    """Write a genlab ViT as a Hugging Face folder that ``ViTForImageClassification.from_pretrained`` loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(genlab_config_to_hf(model.config), indent=1))
    sd = {k: v.detach().contiguous() for k, v in genlab_to_hf(model.state_dict(), model.config).items()}
    save_file(sd, str(folder / WEIGHTS_FILE))
    return folder
