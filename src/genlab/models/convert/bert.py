"""BERT and its family: Hugging Face checkpoints <-> genlab :class:`~genlab.models.bert.Bert`, both ways.

One genlab Bert holds BERT (Devlin et al. 2018), RoBERTa (Liu et al. 2019), ALBERT (Lan et al.
2019), ELECTRA (Clark et al. 2020) and DistilBERT (Sanh et al. 2019): the five are the same
post-norm encoder with different embeddings, sharing and heads, so each is a renaming of tensors
plus config data. A Hugging Face folder holds ``config.json`` and ``model.safetensors`` (or
``pytorch_model.bin``, possibly sharded); its ``model_type`` picks the family below. Hugging Face
keeps separate query, key and value projections, genlab one fused ``qkv`` whose output rows are
q, k, v in that order::

    qkv.weight = [W_q; W_k; W_v]   (3C, C)        qkv.bias = [b_q; b_k; b_v]   (3C,)

Encoder keys (``P.`` is the base model's prefix, ``bert.``, ``roberta.``, ``albert.``,
``electra.``, ``distilbert.``; absent in the bare ``*Model`` checkpoints and accepted either way;
``+`` joins tensors concatenated along dim 0; i = layer)::

    genlab        bert / roberta / electra            albert                                 distilbert
    tok_emb       P.embeddings.word_embeddings        (same)                                 (same)
    pos_emb       P.embeddings.position_embeddings    (same)                                 (same)
    type_emb      P.embeddings.token_type_embeddings  (same)                                 none
    emb_norm      P.embeddings.LayerNorm              (same)                                 (same)
    emb_proj      electra: P.embeddings_project       P.encoder.embedding_hidden_mapping_in  none
    blocks.i      P.encoder.layer.i.                  P.encoder.albert_layer_groups.i        P.transformer.layer.i.
                                                        .albert_layers.0.
      attn.qkv    attention.self.{query+key+value}    attention.{query+key+value}            attention.{q+k+v}_lin
      attn.proj   attention.output.dense              attention.dense                        attention.out_lin
      ln1         attention.output.LayerNorm          attention.LayerNorm                    sa_layer_norm
      mlp.fc      intermediate.dense                  ffn                                    ffn.lin1
      mlp.proj    output.dense                        ffn_output                             ffn.lin2
      ln2         output.LayerNorm                    full_layer_layer_norm                  output_layer_norm
    pooler        P.pooler.dense (electra: none)      P.pooler                               none

Heads, per family (``mlm.decoder.weight`` is the token embedding when tied, and is then not
stored; ``token_classifier`` is ``classifier`` and ``qa`` is ``qa_outputs`` in all five)::

    bert        mlm.dense, mlm.norm     cls.predictions.transform.dense, .transform.LayerNorm
                mlm.decoder             cls.predictions.bias, cls.predictions.decoder.weight
                nsp                     cls.seq_relationship
                classifier              classifier                       (on the pooler)
    roberta     mlm.dense, mlm.norm     lm_head.dense, lm_head.layer_norm
                mlm.decoder             lm_head.bias, lm_head.decoder.weight
                classifier_dense        classifier.dense                 (dense + tanh on <s>)
                classifier              classifier.out_proj
    albert      mlm.dense, mlm.norm     predictions.dense, predictions.LayerNorm      (C -> E)
                mlm.decoder             predictions.bias, predictions.decoder.weight
                sop                     sop_classifier.classifier        (on the pooler)
                classifier              classifier                       (on the pooler)
    electra     mlm.dense, mlm.norm     generator_predictions.dense, .LayerNorm       (C -> E)
                mlm.decoder             generator_lm_head.bias, generator_lm_head.weight
                rtd.dense, rtd.out      discriminator_predictions.dense, .dense_prediction
                classifier_dense        classifier.dense                 (dense + GELU on [CLS])
                classifier              classifier.out_proj
    distilbert  mlm.dense, mlm.norm     vocab_transform, vocab_layer_norm
                mlm.decoder             vocab_projector.bias, vocab_projector.weight
                classifier_dense        pre_classifier                   (dense + ReLU on [CLS])
                classifier              classifier

Config data per family (import sets it, export requires it; see :data:`FAMILIES`):

- RoBERTa: ``position_offset = pad_token_id + 1`` and ``positions_from_mask=True``. transformers
  numbers the positions of the non-padding ids from padding_idx + 1 (fairseq's make_positions),
  so left padding moves nothing; genlab counts the real tokens of the attention mask, which is
  the same wherever the mask marks exactly the padding ids. The position table has
  ``max_position_embeddings = block_size + position_offset`` rows. Sequence head: dense + tanh on
  <s> (``classifier="roberta"``); masked-LM transform: exact GELU (``mlm_act="gelu"``).
- ALBERT: E = ``embedding_size`` < C, layers shared (``num_hidden_groups=1``) or not
  (``num_hidden_groups=num_hidden_layers``), one layer per group; the masked-LM head maps C -> E
  before the tied decoder; ``gelu_new`` is genlab's ``gelu_tanh``; SOP on the pooler.
- ELECTRA: no pooler; E != C adds ``embeddings_project``; the generator's masked-LM transform
  uses exact GELU and maps to E; the discriminator's ``rtd`` head uses ``hidden_act``; sequence
  head: dense + GELU on [CLS] (``classifier="electra"``).
- DistilBERT: no segment embeddings, no pooler, LayerNorm eps 1e-12, config keys ``dim``,
  ``n_layers``, ``n_heads``, ``hidden_dim``, ``activation``; sequence head: pre_classifier + ReLU
  on [CLS] (``classifier="distilbert"``). ``sinusoidal_pos_embds`` checkpoints load too (the
  fixed table is stored like a learned one); exports write learned positions.

Which heads a checkpoint carries follows from ``architectures`` (:data:`ARCHITECTURES`); a bare
``*Model`` has none. An export's family is ``model_type`` or, if not given, read from the config
(:func:`infer_model_type`). Buffers (``position_ids``, ``token_type_ids``) are skipped, and
TensorFlow-era LayerNorm names (``gamma``/``beta``) are read as ``weight``/``bias``.

Tier 2: imports genlab.core, genlab.models, torch, safetensors and json; never ``transformers``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.models.bert import Bert, BertConfig
from genlab.models.convert.gpt2 import CONFIG_FILE, WEIGHTS_FILE, read_hf_config, read_hf_weights


class UnsupportedCheckpointError(ConfigError, CheckpointError):
    """A config.json of a model type or class genlab's Bert does not read (both a ConfigError
    and a CheckpointError, so either kind of handler catches it)."""


# Per-layer modules: genlab name, Hugging Face names (concatenated along dim 0).
_BERT_LAYER = (
    ("attn.qkv", ("attention.self.query", "attention.self.key", "attention.self.value")),
    ("attn.proj", ("attention.output.dense",)),
    ("ln1", ("attention.output.LayerNorm",)),
    ("mlp.fc", ("intermediate.dense",)),
    ("mlp.proj", ("output.dense",)),
    ("ln2", ("output.LayerNorm",)),
)
_ALBERT_LAYER = (
    ("attn.qkv", ("attention.query", "attention.key", "attention.value")),
    ("attn.proj", ("attention.dense",)),
    ("ln1", ("attention.LayerNorm",)),
    ("mlp.fc", ("ffn",)),
    ("mlp.proj", ("ffn_output",)),
    ("ln2", ("full_layer_layer_norm",)),
)
_DISTILBERT_LAYER = (
    ("attn.qkv", ("attention.q_lin", "attention.k_lin", "attention.v_lin")),
    ("attn.proj", ("attention.out_lin",)),
    ("ln1", ("sa_layer_norm",)),
    ("mlp.fc", ("ffn.lin1",)),
    ("mlp.proj", ("ffn.lin2",)),
    ("ln2", ("output_layer_norm",)),
)
_TOKEN_QA = {"token_classifier": "classifier", "qa": "qa_outputs"}


@dataclass(frozen=True)
class Family:
    """How one Hugging Face model type names genlab's modules, and the config data it implies."""

    model_type: str
    architectures: dict[str, list[str]]  # Hugging Face class -> genlab heads
    no_pooler: tuple[str, ...]  # classes built without the pooler (all of them where pooler is None)
    prefix: str  # the base model's attribute in the task classes, with its dot
    layer: str  # key prefix of layer {i}
    layer_modules: tuple
    pooler: str | None  # the pooler's module, None if the family has none
    emb_proj: str | None  # the E -> C projection's module
    heads: dict[str, str]  # genlab head module -> Hugging Face module (.weight and .bias)
    mlm_bias: str  # the decoder bias
    mlm_decoder: str  # the decoder weight, stored only when untied
    aliases: tuple[tuple[str, str], ...] = ()  # (old name, name used here) of one tensor
    classifier: str = "pooler"  # genlab's classifier for this family's sequence head
    mlm_act: str | None = None  # the masked-LM transform's fixed activation (None: hidden_act)
    act_key: str = "hidden_act"
    default_act: str = "gelu"


def _tasks(stem: str, pretraining: dict[str, list[str]]) -> dict[str, list[str]]:
    """The classes a family shares (bare model, masked LM, sequence, token, QA) and its own."""
    return {
        f"{stem}Model": [],
        f"{stem}ForMaskedLM": ["mlm"],
        **pretraining,
        f"{stem}ForSequenceClassification": ["sequence"],
        f"{stem}ForTokenClassification": ["token"],
        f"{stem}ForQuestionAnswering": ["qa"],
    }


FAMILIES: dict[str, Family] = {
    "bert": Family(
        model_type="bert",
        architectures=_tasks("Bert", {"BertForPreTraining": ["mlm", "nsp"], "BertForNextSentencePrediction": ["nsp"]}),
        no_pooler=("BertForMaskedLM", "BertForTokenClassification", "BertForQuestionAnswering"),
        prefix="bert.",
        layer="encoder.layer.{i}.",
        layer_modules=_BERT_LAYER,
        pooler="pooler.dense",
        emb_proj=None,
        heads={
            "mlm.dense": "cls.predictions.transform.dense",
            "mlm.norm": "cls.predictions.transform.LayerNorm",
            "nsp": "cls.seq_relationship",
            "classifier": "classifier",
            **_TOKEN_QA,
        },
        mlm_bias="cls.predictions.bias",
        mlm_decoder="cls.predictions.decoder.weight",
        aliases=(("cls.predictions.decoder.bias", "cls.predictions.bias"),),
    ),
    "roberta": Family(
        model_type="roberta",
        architectures=_tasks("Roberta", {}),
        no_pooler=tuple(a for a in _tasks("Roberta", {}) if a != "RobertaModel"),
        prefix="roberta.",
        layer="encoder.layer.{i}.",
        layer_modules=_BERT_LAYER,
        pooler="pooler.dense",
        emb_proj=None,
        heads={
            "mlm.dense": "lm_head.dense",
            "mlm.norm": "lm_head.layer_norm",
            "classifier_dense": "classifier.dense",
            "classifier": "classifier.out_proj",
            **_TOKEN_QA,
        },
        mlm_bias="lm_head.bias",
        mlm_decoder="lm_head.decoder.weight",
        aliases=(("lm_head.decoder.bias", "lm_head.bias"),),
        classifier="roberta",
        mlm_act="gelu",
    ),
    "albert": Family(
        model_type="albert",
        architectures=_tasks("Albert", {"AlbertForPreTraining": ["mlm", "sop"]}),
        no_pooler=("AlbertForMaskedLM", "AlbertForTokenClassification", "AlbertForQuestionAnswering"),
        prefix="albert.",
        layer="encoder.albert_layer_groups.{i}.albert_layers.0.",
        layer_modules=_ALBERT_LAYER,
        pooler="pooler",
        emb_proj="encoder.embedding_hidden_mapping_in",
        heads={
            "mlm.dense": "predictions.dense",
            "mlm.norm": "predictions.LayerNorm",
            "sop": "sop_classifier.classifier",
            "classifier": "classifier",
            **_TOKEN_QA,
        },
        mlm_bias="predictions.bias",
        mlm_decoder="predictions.decoder.weight",
        aliases=(("predictions.decoder.bias", "predictions.bias"),),
        default_act="gelu_new",
    ),
    "electra": Family(
        model_type="electra",
        architectures=_tasks("Electra", {"ElectraForPreTraining": ["rtd"]}),
        no_pooler=(),
        prefix="electra.",
        layer="encoder.layer.{i}.",
        layer_modules=_BERT_LAYER,
        pooler=None,
        emb_proj="embeddings_project",
        heads={
            "mlm.dense": "generator_predictions.dense",
            "mlm.norm": "generator_predictions.LayerNorm",
            "rtd.dense": "discriminator_predictions.dense",
            "rtd.out": "discriminator_predictions.dense_prediction",
            "classifier_dense": "classifier.dense",
            "classifier": "classifier.out_proj",
            **_TOKEN_QA,
        },
        mlm_bias="generator_lm_head.bias",
        mlm_decoder="generator_lm_head.weight",
        classifier="electra",
        mlm_act="gelu",
    ),
    "distilbert": Family(
        model_type="distilbert",
        architectures=_tasks("DistilBert", {}),
        no_pooler=(),
        prefix="distilbert.",
        layer="transformer.layer.{i}.",
        layer_modules=_DISTILBERT_LAYER,
        pooler=None,
        emb_proj=None,
        heads={
            "mlm.dense": "vocab_transform",
            "mlm.norm": "vocab_layer_norm",
            "classifier_dense": "pre_classifier",
            "classifier": "classifier",
            **_TOKEN_QA,
        },
        mlm_bias="vocab_projector.bias",
        mlm_decoder="vocab_projector.weight",
        classifier="distilbert",
        act_key="activation",
    ),
}
MODEL_TYPES = tuple(FAMILIES)

#: Every Hugging Face class genlab reads -> the genlab heads it carries.
ARCHITECTURES: dict[str, list[str]] = {a: h for f in FAMILIES.values() for a, h in f.architectures.items()}
#: Classes whose encoder has no pooler (``add_pooling_layer=False`` in transformers, or no pooler at all).
NO_POOLER = tuple(a for f in FAMILIES.values() for a in f.architectures if f.pooler is None or a in f.no_pooler)

#: Hugging Face activation -> genlab ``mlp``; "gelu" is the exact erf form in both.
HF_TO_GENLAB_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}
GENLAB_TO_HF_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}

#: Config options genlab's Bert does not implement: (key, value genlab cannot run, what it does).
UNSUPPORTED = (
    ("is_decoder", True, "makes the encoder a causal decoder"),
    ("add_cross_attention", True, "adds encoder-decoder cross-attention"),
)

_SKIP = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")
_BARE = ("embeddings.", "embeddings_project.", "encoder.", "pooler.", "transformer.")


# --- configs ---------------------------------------------------------------------------


def model_type_of(cfg: dict, where: str = CONFIG_FILE) -> str:
    """The family of a config.json; one-line UnsupportedCheckpointError naming the supported types."""
    model_type = cfg.get("model_type")
    if model_type not in FAMILIES:
        archs = cfg.get("architectures") or []
        name = model_type or (archs[0] if archs else "model_type-less")
        raise UnsupportedCheckpointError(
            f"{where}: this is a {name} checkpoint; genlab's Bert reads model_type {', '.join(MODEL_TYPES)}"
        )
    return model_type


def check_architecture(cfg: dict, where: str = CONFIG_FILE) -> str:
    """The Hugging Face class of a config.json of the BERT family; one-line error naming what else it is."""
    fam = FAMILIES[model_type_of(cfg, where)]
    archs = cfg.get("architectures") or [next(iter(fam.architectures))]
    if len(archs) != 1 or archs[0] not in fam.architectures:
        raise UnsupportedCheckpointError(
            f"{where}: architecture {archs} is not supported for model_type '{fam.model_type}'; "
            f"genlab reads {', '.join(fam.architectures)}"
        )
    return archs[0]


def _int_field(cfg: dict, name: str, where: str, default: int | None = None, minimum: int = 1) -> int:
    value = cfg.get(name, default)
    if value is None:
        raise ConfigError(f"{where} has no '{name}': not a complete config")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: '{name}' must be an integer >= {minimum}, got {value!r}")
    return value


def _num_labels(cfg: dict) -> int:
    if isinstance(cfg.get("id2label"), dict) and cfg["id2label"]:
        return len(cfg["id2label"])
    return int(cfg.get("num_labels") or 2)


def hf_config_to_genlab(cfg: dict, where: str = CONFIG_FILE, pooler: bool | None = None) -> BertConfig:
    """A Hugging Face ``config.json`` (as a dict) of BERT, RoBERTa, ALBERT, ELECTRA or DistilBERT
    -> :class:`BertConfig`.

    The heads follow ``architectures``; ``pooler`` (default: what the architecture builds)
    says whether the checkpoint has pooler weights. One-line error for another architecture
    or an option genlab cannot run.
    """
    arch = check_architecture(cfg, where)
    fam = FAMILIES[cfg["model_type"]]
    for key, bad, what in UNSUPPORTED:
        if cfg.get(key) == bad:
            raise ConfigError(f"{where}: {key}={json.dumps(bad)} ({what}) is not supported by genlab's Bert")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(
            f"{where}: position_embedding_type={cfg['position_embedding_type']!r} is not supported; "
            "genlab's Bert has absolute positions"
        )
    act = cfg.get(fam.act_key, fam.default_act)
    if act not in HF_TO_GENLAB_ACTIVATION:
        raise ConfigError(
            f"{where}: {fam.act_key}={act!r} is not supported; genlab runs {sorted(HF_TO_GENLAB_ACTIVATION)}"
        )
    distil = fam.model_type == "distilbert"
    n_embd = _int_field(cfg, "dim" if distil else "hidden_size", where)
    n_head = _int_field(cfg, "n_heads" if distil else "num_attention_heads", where)
    if n_embd % n_head:
        raise ConfigError(f"{where}: hidden size {n_embd} is not divisible by {n_head} attention heads")
    n_layer = _int_field(cfg, "n_layers" if distil else "num_hidden_layers", where)
    n_inner = _int_field(cfg, "hidden_dim" if distil else "intermediate_size", where)
    heads = fam.architectures[arch]
    if arch.endswith("ForQuestionAnswering") and _num_labels(cfg) != 2:
        raise ConfigError(f"{where}: a question-answering head has 2 outputs (start, end), not {_num_labels(cfg)}")
    if "sop" in heads and _num_labels(cfg) != 2:
        raise ConfigError(f"{where}: sentence-order prediction has 2 classes (AlbertSOPHead), not {_num_labels(cfg)}")
    if pooler is None:
        pooler = fam.pooler is not None and arch not in fam.no_pooler
    n_positions = _int_field(cfg, "max_position_embeddings", where)
    pad = cfg.get("pad_token_id", 1 if fam.model_type == "roberta" else 0)
    fields = {
        "vocab_size": _int_field(cfg, "vocab_size", where),
        "block_size": n_positions,
        "type_vocab_size": 0 if distil else _int_field(cfg, "type_vocab_size", where, default=2),
        "n_layer": n_layer,
        "n_head": n_head,
        "n_embd": n_embd,
        "n_inner": 0 if n_inner == 4 * n_embd else n_inner,
        "dropout": float(cfg.get("dropout" if distil else "hidden_dropout_prob", 0.1)),
        "attention_dropout": float(cfg.get("attention_dropout" if distil else "attention_probs_dropout_prob", 0.1)),
        "mlp": HF_TO_GENLAB_ACTIVATION[act],
        "norm_eps": 1e-12 if distil else float(cfg.get("layer_norm_eps", 1e-12)),
        "pad_token_id": pad,
        "pooler": pooler,
        "heads": list(heads),
        "num_labels": _num_labels(cfg) if {"sequence", "token"} & set(heads) else 2,
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", True)),
        "init_std": float(cfg.get("initializer_range", 0.02)),
        "classifier": fam.classifier,
        "mlm_act": fam.mlm_act or "",
    }
    if fam.model_type == "roberta":
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
            raise ConfigError(f"{where}: RoBERTa numbers positions from pad_token_id + 1; got pad_token_id={pad!r}")
        if n_positions <= pad + 1:
            raise ConfigError(f"{where}: max_position_embeddings={n_positions} leaves no position after the padding")
        fields |= {"position_offset": pad + 1, "block_size": n_positions - pad - 1, "positions_from_mask": True}
    if fam.model_type in ("albert", "electra"):
        e = _int_field(cfg, "embedding_size", where, default=128)
        fields["embedding_size"] = 0 if e == n_embd else e
    if fam.model_type == "albert":
        if fields["embedding_size"] == 0:
            raise ConfigError(
                f"{where}: ALBERT with embedding_size == hidden_size ({n_embd}) still projects C -> C "
                "(embedding_hidden_mapping_in), which genlab's Bert builds only when E != C"
            )
        groups = _int_field(cfg, "num_hidden_groups", where, default=1)
        inner = _int_field(cfg, "inner_group_num", where, default=1)
        if inner != 1 or groups not in (1, n_layer):
            raise ConfigError(
                f"{where}: num_hidden_groups={groups}, inner_group_num={inner}: genlab shares all layers "
                f"(1 group) or none ({n_layer} groups), one layer per group"
            )
        fields["share_layers"] = groups == 1 and n_layer > 1
    try:
        return BertConfig(**fields)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e


def infer_model_type(cfg: BertConfig) -> str:
    """The Hugging Face family a genlab config exports to when none is named, first match wins:
    an ``sop`` head or shared layers: albert; an ``rtd`` head or ``classifier="electra"``:
    electra; a position offset, positions from the mask or ``classifier="roberta"``: roberta;
    no segments or ``classifier="distilbert"``: distilbert; E != C: albert; else bert."""
    if "sop" in cfg.heads or cfg.share_layers:
        return "albert"
    if "rtd" in cfg.heads or cfg.classifier == "electra":
        return "electra"
    if cfg.position_offset or cfg.positions_from_mask or cfg.classifier == "roberta":
        return "roberta"
    if cfg.type_vocab_size == 0 or cfg.classifier == "distilbert":
        return "distilbert"
    if cfg.emb_dim != cfg.n_embd:
        return "albert"
    return "bert"


def _family(cfg: BertConfig, model_type: str | None) -> Family:
    model_type = model_type or infer_model_type(cfg)
    if model_type not in FAMILIES:
        raise ConfigError(f"model_type={model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    return FAMILIES[model_type]


def architecture_for(cfg: BertConfig, model_type: str | None = None) -> str:
    """The Hugging Face class of ``model_type`` (default :func:`infer_model_type`) with exactly
    ``cfg.heads``; ConfigError if there is none."""
    fam = _family(cfg, model_type)
    for arch, heads in fam.architectures.items():
        if sorted(heads) == sorted(cfg.heads):
            return arch
    raise ConfigError(
        f"heads={cfg.heads} match no single Hugging Face {fam.model_type} architecture; export a model with one of "
        + ", ".join(str(h) for h in fam.architectures.values())
    )


def _requirements(cfg: BertConfig, fam: Family) -> list[tuple[str, object, bool, str]]:
    """(field, value it needs, whether cfg has it, why) for ``cfg`` to be written as ``fam``."""
    t = fam.model_type
    heads = set(cfg.heads)
    rows = [("mlp", sorted(GENLAB_TO_HF_ACTIVATION), cfg.mlp in GENLAB_TO_HF_ACTIVATION, "a Hugging Face activation")]
    rows.append(("heads", "no 'sbo'", "sbo" not in heads, "transformers has no span boundary head"))
    if t == "albert":
        rows.append(("embedding_size", f"< n_embd={cfg.n_embd}", cfg.emb_dim != cfg.n_embd, "ALBERT's E -> C map"))
    elif t != "electra":
        rows.append(("embedding_size", 0, cfg.emb_dim == cfg.n_embd, f"no factorised embeddings in {t}"))
    if t != "albert":
        rows.append(("share_layers", False, not cfg.share_layers, f"one set of weights per layer in {t}"))
    if t == "roberta":
        pad = cfg.pad_token_id
        rows.append(("pad_token_id", "an id", pad is not None, "RoBERTa numbers positions after the padding id"))
        rows.append(("position_offset", (pad or 0) + 1, cfg.position_offset == (pad or 0) + 1, "padding_idx + 1"))
        rows.append(("positions_from_mask", True, cfg.positions_from_mask, "positions count real tokens only"))
    else:
        rows.append(("position_offset", 0, cfg.position_offset == 0, f"positions from 0 in {t}"))
        rows.append(("positions_from_mask", False, not cfg.positions_from_mask, f"positions by index in {t}"))
    if t == "distilbert":
        rows.append(("type_vocab_size", 0, cfg.type_vocab_size == 0, "DistilBERT has no segment embeddings"))
        rows.append(("norm_eps", 1e-12, cfg.norm_eps == 1e-12, "DistilBERT's fixed LayerNorm eps"))
    else:
        rows.append(("type_vocab_size", "at least 1", cfg.type_vocab_size >= 1, f"segment embeddings in {t}"))
    if fam.pooler is None:
        rows.append(("pooler", False, not cfg.pooler, f"{t} has no pooler"))
    if "sequence" in heads:
        rows.append(("classifier", fam.classifier, cfg.classifier == fam.classifier, f"{t}'s sequence head"))
    if "mlm" in heads:
        want = fam.mlm_act or cfg.mlp
        what = f"{t}'s masked-LM transform activation; this model's is {cfg.head_act}"
        rows.append(("mlm_act", want, cfg.head_act == want, what))
    return rows


def genlab_config_to_hf(cfg: BertConfig, dtype: str = "float32", model_type: str | None = None) -> dict:
    """:class:`BertConfig` -> a complete ``config.json`` dict of ``model_type`` (default
    :func:`infer_model_type`); ConfigError (naming the field) for what that family cannot express."""
    fam = _family(cfg, model_type)
    t = fam.model_type
    for name, value, ok, what in _requirements(cfg, fam):
        if not ok:
            raise ConfigError(
                f"{name}={getattr(cfg, name)!r} cannot be written as {t}, which needs {name}={value!r} ({what})"
            )
    arch = architecture_for(cfg, t)
    act = GENLAB_TO_HF_ACTIVATION[cfg.mlp]
    out: dict = {"architectures": [arch], "model_type": t, "vocab_size": cfg.vocab_size}
    if t == "distilbert":
        out |= {
            "dim": cfg.n_embd,
            "n_layers": cfg.n_layer,
            "n_heads": cfg.n_head,
            "hidden_dim": cfg.hidden,
            "activation": act,
            "dropout": cfg.dropout,
            "attention_dropout": cfg.attention_dropout,
            "qa_dropout": cfg.dropout,
            "seq_classif_dropout": cfg.dropout,
            "sinusoidal_pos_embds": False,
        }
    else:
        out |= {
            "hidden_size": cfg.n_embd,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "intermediate_size": cfg.hidden,
            "hidden_act": act,
            "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.attention_dropout,
            "type_vocab_size": cfg.type_vocab_size,
            "layer_norm_eps": cfg.norm_eps,
        }
    if t in ("bert", "roberta", "electra"):
        out |= {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}
        out |= {"use_cache": False}
    if t in ("albert", "electra"):
        out["embedding_size"] = cfg.emb_dim
    if t == "albert":
        out |= {"num_hidden_groups": 1 if cfg.share_layers else cfg.n_layer, "inner_group_num": 1}
        out["classifier_dropout_prob"] = cfg.dropout
    out |= {
        "max_position_embeddings": cfg.block_size + cfg.position_offset,
        "initializer_range": cfg.init_std,
        "pad_token_id": cfg.pad_token_id,
        "tie_word_embeddings": cfg.tie_embeddings,
        "dtype": dtype,
    }
    if {"sequence", "token"} & set(cfg.heads):
        out["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        out["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return out


# --- state dicts -----------------------------------------------------------------------


def key_map(cfg: BertConfig, model_type: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(genlab key, Hugging Face keys concatenated along dim 0) for every weight of ``cfg``'s Bert,
    in ``model_type``'s names (default :func:`infer_model_type`).

    Encoder keys carry the base-model prefix of the task architectures (``bert.``, ...)."""
    fam = _family(cfg, model_type)
    p = fam.prefix
    rows: list[tuple[str, tuple[str, ...]]] = []

    def module(ours: str, theirs: str) -> None:
        rows.extend([(f"{ours}.weight", (f"{theirs}.weight",)), (f"{ours}.bias", (f"{theirs}.bias",))])

    rows.append(("tok_emb.weight", (p + "embeddings.word_embeddings.weight",)))
    rows.append(("pos_emb.weight", (p + "embeddings.position_embeddings.weight",)))
    if cfg.type_vocab_size:
        rows.append(("type_emb.weight", (p + "embeddings.token_type_embeddings.weight",)))
    module("emb_norm", p + "embeddings.LayerNorm")
    if cfg.emb_dim != cfg.n_embd:
        if fam.emb_proj is None:
            raise ConfigError(f"{fam.model_type} has no E -> C projection for embedding_size={cfg.embedding_size}")
        module("emb_proj", p + fam.emb_proj)
    for i in range(1 if cfg.share_layers else cfg.n_layer):
        layer = p + fam.layer.format(i=i)
        for ours, theirs in fam.layer_modules:
            for w in ("weight", "bias"):
                rows.append((f"blocks.{i}.{ours}.{w}", tuple(f"{layer}{t}.{w}" for t in theirs)))
    if cfg.pooler and fam.pooler is not None:
        module("pooler", p + fam.pooler)
    heads = set(cfg.heads)
    present = {
        "mlm.dense": "mlm" in heads,
        "mlm.norm": "mlm" in heads,
        "nsp": "nsp" in heads,
        "sop": "sop" in heads,
        "rtd.dense": "rtd" in heads,
        "rtd.out": "rtd" in heads,
        "classifier_dense": "sequence" in heads and cfg.classifier != "pooler",
        "classifier": "sequence" in heads,
        "token_classifier": "token" in heads,
        "qa": "qa" in heads,
    }
    for ours, theirs in fam.heads.items():
        if present[ours]:
            module(ours, theirs)
    if "mlm" in heads:
        rows.append(("mlm.decoder.bias", (fam.mlm_bias,)))
        if not cfg.tie_embeddings:
            rows.append(("mlm.decoder.weight", (fam.mlm_decoder,)))
    return rows


def _normalise_key(key: str, fam: Family) -> str:
    """A checkpoint key in the form :func:`key_map` uses (base-model prefix, weight/bias names)."""
    if key.endswith(".gamma") or key.endswith(".beta"):
        key = key.rsplit(".", 1)[0] + (".weight" if key.endswith(".gamma") else ".bias")
    if key.startswith(_BARE):
        key = fam.prefix + key  # a bare *Model checkpoint
    for old, new in fam.aliases:
        if key == old:
            key = new  # the same tensor, saved under either name
    return key


def _expected_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(t.shape) for k, t in Bert(cfg).state_dict().items()}


def _short(keys: list[str]) -> str:
    return f"{keys[:3]}{'...' if len(keys) > 3 else ''}"


def hf_state_to_genlab(
    tensors: dict[str, torch.Tensor], cfg: BertConfig, where: str = "", model_type: str | None = None
) -> dict[str, torch.Tensor]:
    """Hugging Face tensors of ``model_type`` -> genlab ``Bert`` state dict; CheckpointError (one line)
    on any mismatch."""
    fam = _family(cfg, model_type)
    where = f"{where}: " if where else ""
    found: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if _SKIP.search(key):
            continue
        key = _normalise_key(key, fam)
        if key == fam.mlm_decoder and cfg.tie_embeddings:
            continue  # the decoder is the token embedding
        found[key] = t
    rows = key_map(cfg, fam.model_type)
    known = {k for _, theirs in rows for k in theirs}
    missing = [k for k in known if k not in found]
    unexpected = [k for k in found if k not in known]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}the weights do not match config.json: missing {_short(sorted(missing))}, "
            f"unexpected {_short(sorted(unexpected))} (weights of another model or config?)"
        )
    shapes = _expected_shapes(cfg)
    out = {}
    for ours, theirs in rows:
        parts = [found[k] for k in theirs]
        t = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        if tuple(t.shape) != shapes[ours]:
            raise CheckpointError(
                f"{where}'{' + '.join(theirs)}' has shape {tuple(t.shape)} but config.json implies "
                f"{shapes[ours]} (weights of another config?)"
            )
        out[ours] = t.contiguous()
    return out


def genlab_state_to_hf(
    state: dict[str, torch.Tensor], cfg: BertConfig, model_type: str | None = None
) -> dict[str, torch.Tensor]:
    """genlab ``Bert`` state dict -> Hugging Face tensors of ``model_type`` (base-model keys prefixed;
    a tied decoder not stored). A model without heads is written with bare ``*Model`` keys."""
    fam = _family(cfg, model_type)
    bare = not cfg.heads
    out = {}
    for ours, theirs in key_map(cfg, fam.model_type):
        if ours not in state:
            raise CheckpointError(f"the genlab state dict has no '{ours}': not a Bert of this config")
        t = state[ours].detach().cpu()
        for key, part in zip(theirs, t.chunk(len(theirs), dim=0)):
            out[key.removeprefix(fam.prefix) if bare else key] = part.contiguous().clone()
    return out


def bert_from_hf_state(
    tensors: dict[str, torch.Tensor], cfg: BertConfig, where: str = "", model_type: str | None = None
) -> Bert:
    """A genlab Bert (eval mode, fp32) holding Hugging Face weights of ``model_type``."""
    state = hf_state_to_genlab(tensors, cfg, where, model_type)
    with torch.device("meta"):  # no time spent on a random initialisation that is overwritten
        model = Bert(cfg)
    model.load_state_dict({k: t.float() for k, t in state.items()}, strict=False, assign=True)  # keys checked above
    if model.mlm is not None and cfg.tie_embeddings:
        model.mlm.decoder.weight = model.tok_emb.weight  # assign replaced tok_emb's parameter: tie again
    return model.eval()


# --- files -----------------------------------------------------------------------------


def load_hf_bert(hf_dir: Path) -> Bert:
    """A Hugging Face BERT / RoBERTa / ALBERT / ELECTRA / DistilBERT folder -> genlab Bert in eval
    mode (config checked before weights are read).

    The pooler is kept when the weights hold one, whatever the architecture."""
    hf_dir = Path(hf_dir)
    where = str(hf_dir / CONFIG_FILE)
    hf_cfg = read_hf_config(hf_dir)
    hf_config_to_genlab(hf_cfg, where)  # refuse another architecture before reading weights
    fam = FAMILIES[hf_cfg["model_type"]]
    tensors = read_hf_weights(hf_dir)
    needs_pooler = {"nsp", "sop"} | ({"sequence"} if fam.classifier == "pooler" else set())
    needs_pooler &= set(fam.architectures[check_architecture(hf_cfg, where)])
    pooler_key = None if fam.pooler is None else fam.prefix + fam.pooler + "."
    has_pooler = pooler_key is not None and any(_normalise_key(k, fam).startswith(pooler_key) for k in tensors)
    cfg = hf_config_to_genlab(hf_cfg, where, pooler=has_pooler or bool(needs_pooler))
    return bert_from_hf_state(tensors, cfg, where=str(hf_dir), model_type=fam.model_type)


def write_hf_bert(model: Bert, out_dir: Path, model_type: str | None = None) -> list[Path]:
    """Write ``config.json`` + ``model.safetensors`` for ``model`` as ``model_type`` (default
    :func:`infer_model_type`) into ``out_dir``; returns the paths.

    The class named in config.json (see :func:`architecture_for`) loads the folder with no
    missing or unexpected keys when the pooler matches it: a pooler on a masked-LM, token or QA
    model is written but ignored by transformers; a bare BERT/RoBERTa/ALBERT model without one
    gets a random pooler from transformers (``last_hidden_state`` is unaffected)."""
    out_dir = Path(out_dir)
    cfg = model.config
    dtype = str(model.tok_emb.weight.dtype).removeprefix("torch.")
    hf_cfg = genlab_config_to_hf(cfg, dtype=dtype, model_type=model_type)  # refuses before writing anything
    tensors = genlab_state_to_hf(model.state_dict(), cfg, hf_cfg["model_type"])
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / CONFIG_FILE, out_dir / WEIGHTS_FILE
    config_path.write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    return [config_path, weights_path]
