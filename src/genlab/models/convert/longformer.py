"""Longformer: Hugging Face ``LongformerModel`` <-> genlab :class:`~genlab.models.bert.Bert` with
``attention="longformer"``, both ways.

Beltagy et al. 2020, arXiv:2004.05150. ``LongformerModel`` is RoBERTa (positions from
``pad_token_id + 1`` over the real tokens, post-norm layers, a pooler) whose self-attention is a
sliding window of ``attention_window`` keys (w/2 each side) plus global tokens, and which keeps
a second set of query/key/value projections for the global rows. So the key map is RoBERTa's
(:mod:`genlab.models.convert.bert`, bare ``*Model`` keys), plus, per layer i::

    genlab                          Hugging Face
    blocks.i.attn.qkv_global        encoder.layer.i.attention.self.{query_global+key_global+value_global}

Config: every layer must have the same window (genlab's ``attention_window`` is one number);
``global_projections=True``. Hugging Face pads the sequence to a multiple of the window and
masks the padding; genlab's chunked attention needs no padding, and the two agree on the real
tokens.
"""

from __future__ import annotations

import dataclasses

import torch

from genlab.core.errors import CheckpointError, ConfigError
from genlab.models.bert import Bert, BertConfig
from genlab.models.convert import bert as bert_convert

_PREFIX = "roberta."


def hf_config_to_genlab(cfg: dict, where: str = "config.json") -> BertConfig:
    """A ``LongformerConfig`` dict (``model_type: longformer``, a bare LongformerModel) -> BertConfig."""
    if cfg.get("model_type") != "longformer":
        raise ConfigError(f"{where}: model_type={cfg.get('model_type')!r} is not longformer")
    window = cfg.get("attention_window", 512)
    windows = [window] * int(cfg["num_hidden_layers"]) if isinstance(window, int) else list(window)
    if len(set(windows)) != 1:
        raise ConfigError(f"{where}: attention_window={windows} differs per layer; genlab uses one window for all")
    as_roberta = {**cfg, "model_type": "roberta", "architectures": ["RobertaModel"]}
    base = bert_convert.hf_config_to_genlab(as_roberta, where)
    return dataclasses.replace(base, attention="longformer", attention_window=windows[0], global_projections=True)


def genlab_config_to_hf(cfg: BertConfig) -> dict:
    """BertConfig with attention=longformer and global projections -> a LongformerModel ``config.json`` dict."""
    if cfg.attention != "longformer" or not cfg.global_projections or cfg.attention_dilation != 1:
        raise ConfigError("a LongformerModel needs attention=longformer, global_projections=true, attention_dilation=1")
    out = bert_convert.genlab_config_to_hf(dataclasses.replace(cfg, heads=[]), model_type="roberta")
    out |= {"model_type": "longformer", "architectures": ["LongformerModel"]}
    out |= {"attention_window": [cfg.attention_window] * cfg.n_layer, "sep_token_id": 2, "bos_token_id": 0}
    return out


def key_map(cfg: BertConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(genlab key, Hugging Face keys concatenated along dim 0) for a bare LongformerModel."""
    plain = dataclasses.replace(cfg, attention="sdpa", heads=[])
    roberta = bert_convert.key_map(plain, "roberta")
    rows = [(ours, tuple(t.removeprefix(_PREFIX) for t in theirs)) for ours, theirs in roberta]
    for i in range(cfg.n_layer):
        attn = f"encoder.layer.{i}.attention.self."
        for w in ("weight", "bias"):
            theirs = tuple(f"{attn}{n}_global.{w}" for n in ("query", "key", "value"))
            rows.append((f"blocks.{i}.attn.qkv_global.{w}", theirs))
    return rows


def hf_state_to_genlab(tensors: dict[str, torch.Tensor], cfg: BertConfig) -> dict[str, torch.Tensor]:
    """LongformerModel tensors -> genlab Bert state dict (one-line CheckpointError on a mismatch)."""
    rows = key_map(cfg)
    wanted = {k for _, theirs in rows for k in theirs}
    buffers = ("embeddings.position_ids", "embeddings.token_type_ids")
    tensors = {k: t for k, t in tensors.items() if not k.endswith(buffers)}
    missing = sorted(wanted - set(tensors))
    unexpected = sorted(set(tensors) - wanted)
    if missing or unexpected:
        raise CheckpointError(
            f"not a LongformerModel of this config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return {ours: torch.cat([tensors[k] for k in theirs], 0).contiguous() for ours, theirs in rows}


def genlab_state_to_hf(state: dict[str, torch.Tensor], cfg: BertConfig) -> dict[str, torch.Tensor]:
    """genlab Bert (attention=longformer) state dict -> LongformerModel tensors."""
    out = {}
    for ours, theirs in key_map(cfg):
        for k, part in zip(theirs, state[ours].detach().cpu().chunk(len(theirs), 0), strict=True):
            out[k] = part.contiguous().clone()
    return out


def bert_from_longformer(tensors: dict[str, torch.Tensor], hf_config: dict) -> Bert:
    """A genlab Bert (eval mode) holding a LongformerModel's weights."""
    cfg = dataclasses.replace(hf_config_to_genlab(hf_config), heads=[])
    model = Bert(cfg)
    model.load_state_dict(hf_state_to_genlab(tensors, cfg))
    return model.eval()
