"""BERT: Hugging Face checkpoints <-> genlab :class:`~genlab.models.bert.Bert`, both directions.

Devlin et al. 2018. A Hugging Face BERT folder holds ``config.json`` and ``model.safetensors``
(or ``pytorch_model.bin``, possibly sharded). genlab's Bert is the same network; the conversion
is a renaming plus one concatenation: Hugging Face keeps separate ``query``, ``key`` and
``value`` projections, genlab one fused ``qkv`` whose output rows are q, k, v in that order:

    qkv.weight = [W_q; W_k; W_v]   (3C, C)        qkv.bias = [b_q; b_k; b_v]   (3C,)

Key map (i = layer, ``bert.`` is absent in ``BertModel`` checkpoints and accepted either way;
a ``+`` joins the tensors concatenated along dim 0):

    genlab                          Hugging Face
    tok_emb.weight                  bert.embeddings.word_embeddings.weight
    pos_emb.weight                  bert.embeddings.position_embeddings.weight
    type_emb.weight                 bert.embeddings.token_type_embeddings.weight
    emb_norm.*                      bert.embeddings.LayerNorm.*
    blocks.i.attn.qkv.*             bert.encoder.layer.i.attention.self.{query + key + value}.*
    blocks.i.attn.proj.*            bert.encoder.layer.i.attention.output.dense.*
    blocks.i.ln1.*                  bert.encoder.layer.i.attention.output.LayerNorm.*
    blocks.i.mlp.fc.*               bert.encoder.layer.i.intermediate.dense.*
    blocks.i.mlp.proj.*             bert.encoder.layer.i.output.dense.*
    blocks.i.ln2.*                  bert.encoder.layer.i.output.LayerNorm.*
    pooler.*                        bert.pooler.dense.*
    mlm.dense.*                     cls.predictions.transform.dense.*
    mlm.norm.*                      cls.predictions.transform.LayerNorm.*
    mlm.decoder.bias                cls.predictions.bias         (also read as cls.predictions.decoder.bias)
    mlm.decoder.weight              cls.predictions.decoder.weight    only when untied (tied: not stored)
    nsp.*                           cls.seq_relationship.*
    classifier.*                    classifier.*                 BertForSequenceClassification
    token_classifier.*              classifier.*                 BertForTokenClassification
    qa.*                            qa_outputs.*

Which heads a checkpoint carries follows from ``architectures`` in config.json, as below; a
``BertModel`` (the encoder alone, as sentence-transformers ships it) has none. Buffers that are
not weights (``position_ids``, ``token_type_ids``) are skipped, and TensorFlow-era LayerNorm
names (``gamma``/``beta``) are read as ``weight``/``bias``.

Tier 2: imports genlab.core, genlab.models, torch, safetensors and json; never ``transformers``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.models.bert import Bert, BertConfig
from genlab.models.convert.gpt2 import CONFIG_FILE, WEIGHTS_FILE, read_hf_config, read_hf_weights

#: Hugging Face architecture -> the genlab heads it carries.
ARCHITECTURES: dict[str, list[str]] = {
    "BertModel": [],
    "BertForMaskedLM": ["mlm"],
    "BertForPreTraining": ["mlm", "nsp"],
    "BertForNextSentencePrediction": ["nsp"],
    "BertForSequenceClassification": ["sequence"],
    "BertForTokenClassification": ["token"],
    "BertForQuestionAnswering": ["qa"],
}
#: Architectures whose encoder has no pooler (``add_pooling_layer=False`` in transformers).
NO_POOLER = ("BertForMaskedLM", "BertForTokenClassification", "BertForQuestionAnswering")

#: Hugging Face ``hidden_act`` -> genlab ``mlp``; "gelu" is the exact erf form in both.
HF_TO_GENLAB_ACTIVATION = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}
GENLAB_TO_HF_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}

#: BERT config options genlab's Bert does not implement: (key, value genlab cannot run, what it does).
UNSUPPORTED = (
    ("is_decoder", True, "makes the encoder a causal decoder"),
    ("add_cross_attention", True, "adds encoder-decoder cross-attention"),
)

_SKIP = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")
_PREFIX = "bert."

# Per-layer modules: genlab name, Hugging Face names (concatenated along dim 0).
_LAYER = (
    ("attn.qkv", ("attention.self.query", "attention.self.key", "attention.self.value")),
    ("attn.proj", ("attention.output.dense",)),
    ("ln1", ("attention.output.LayerNorm",)),
    ("mlp.fc", ("intermediate.dense",)),
    ("mlp.proj", ("output.dense",)),
    ("ln2", ("output.LayerNorm",)),
)


# --- configs ---------------------------------------------------------------------------


def check_architecture(cfg: dict, where: str = CONFIG_FILE) -> str:
    """The architecture of a BERT config.json; ConfigError (one line) naming what else it is."""
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or ["BertModel"]
    if model_type != "bert":
        name = model_type or archs[0]
        raise ConfigError(f"{where}: this is a {name} checkpoint; genlab reads BERT (model_type 'bert') here")
    if len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise ConfigError(f"{where}: architecture {archs} is not supported; genlab reads {', '.join(ARCHITECTURES)}")
    return archs[0]


def _int_field(cfg: dict, name: str, where: str, default: int | None = None, minimum: int = 1) -> int:
    value = cfg.get(name, default)
    if value is None:
        raise ConfigError(f"{where} has no '{name}': not a complete BERT config")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: '{name}' must be an integer >= {minimum}, got {value!r}")
    return value


def _num_labels(cfg: dict) -> int:
    if isinstance(cfg.get("id2label"), dict) and cfg["id2label"]:
        return len(cfg["id2label"])
    return int(cfg.get("num_labels") or 2)


def hf_config_to_genlab(cfg: dict, where: str = CONFIG_FILE, pooler: bool | None = None) -> BertConfig:
    """A Hugging Face BERT ``config.json`` (as a dict) -> :class:`BertConfig`.

    The heads follow ``architectures``; ``pooler`` (default: what the architecture builds)
    says whether the checkpoint has pooler weights. ConfigError for another architecture
    or an option genlab cannot run.
    """
    arch = check_architecture(cfg, where)
    for key, bad, what in UNSUPPORTED:
        if cfg.get(key) == bad:
            raise ConfigError(f"{where}: {key}={json.dumps(bad)} ({what}) is not supported by genlab's Bert")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(
            f"{where}: position_embedding_type={cfg['position_embedding_type']!r} is not supported; "
            "genlab's Bert has absolute positions"
        )
    act = cfg.get("hidden_act", "gelu")
    if act not in HF_TO_GENLAB_ACTIVATION:
        raise ConfigError(
            f"{where}: hidden_act={act!r} is not supported; genlab runs {sorted(HF_TO_GENLAB_ACTIVATION)}"
        )
    n_embd = _int_field(cfg, "hidden_size", where)
    n_head = _int_field(cfg, "num_attention_heads", where)
    if n_embd % n_head:
        raise ConfigError(f"{where}: hidden_size={n_embd} is not divisible by num_attention_heads={n_head}")
    n_inner = _int_field(cfg, "intermediate_size", where)
    heads = ARCHITECTURES[arch]
    if arch == "BertForQuestionAnswering" and _num_labels(cfg) != 2:
        raise ConfigError(f"{where}: a question-answering head has 2 outputs (start, end), not {_num_labels(cfg)}")
    if pooler is None:
        pooler = arch not in NO_POOLER
    try:
        return _bert_config(cfg, where, act, n_embd, n_head, n_inner, heads, pooler)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e


def _bert_config(cfg: dict, where: str, act: str, n_embd: int, n_head: int, n_inner: int, heads, pooler) -> BertConfig:
    return BertConfig(
        vocab_size=_int_field(cfg, "vocab_size", where),
        block_size=_int_field(cfg, "max_position_embeddings", where),
        type_vocab_size=_int_field(cfg, "type_vocab_size", where, default=2),
        n_layer=_int_field(cfg, "num_hidden_layers", where),
        n_head=n_head,
        n_embd=n_embd,
        n_inner=0 if n_inner == 4 * n_embd else n_inner,
        dropout=float(cfg.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(cfg.get("attention_probs_dropout_prob", 0.1)),
        mlp=HF_TO_GENLAB_ACTIVATION[act],
        norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        pad_token_id=cfg.get("pad_token_id", 0),
        pooler=pooler,
        heads=list(heads),
        num_labels=_num_labels(cfg) if {"sequence", "token"} & set(heads) else 2,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        init_std=float(cfg.get("initializer_range", 0.02)),
    )


def architecture_for(cfg: BertConfig) -> str:
    """The Hugging Face architecture with exactly ``cfg.heads``; ConfigError if there is none."""
    for arch, heads in ARCHITECTURES.items():
        if sorted(heads) == sorted(cfg.heads):
            return arch
    raise ConfigError(
        f"heads={cfg.heads} match no single Hugging Face BERT architecture; export a model with one of "
        + ", ".join(str(h) for h in ARCHITECTURES.values())
    )


def genlab_config_to_hf(cfg: BertConfig, dtype: str = "float32") -> dict:
    """:class:`BertConfig` -> a complete BERT ``config.json`` dict; ConfigError (naming the field)
    for what BERT cannot express."""
    needs = (
        ("embedding_size", 0, cfg.embedding_size in (0, cfg.n_embd), "no factorised embeddings (that is ALBERT)"),
        ("share_layers", False, not cfg.share_layers, "one set of weights per layer (sharing is ALBERT)"),
        ("position_offset", 0, cfg.position_offset == 0, "positions from 0 (offsets are RoBERTa)"),
        ("type_vocab_size", "at least 1", cfg.type_vocab_size >= 1, "segment embeddings"),
        ("mlp", sorted(GENLAB_TO_HF_ACTIVATION), cfg.mlp in GENLAB_TO_HF_ACTIVATION, "a BERT activation"),
    )
    for name, value, ok, what in needs:
        if not ok:
            raise ConfigError(
                f"{name}={getattr(cfg, name)!r} cannot be written as BERT, which needs {name}={value!r} ({what})"
            )
    arch = architecture_for(cfg)
    out = {
        "architectures": [arch],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.hidden,
        "hidden_act": GENLAB_TO_HF_ACTIVATION[cfg.mlp],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.block_size,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.init_std,
        "layer_norm_eps": cfg.norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": cfg.tie_embeddings,
        "is_decoder": False,
        "add_cross_attention": False,
        "use_cache": False,
        "dtype": dtype,
    }
    if {"sequence", "token"} & set(cfg.heads):
        out["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        out["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return out


# --- state dicts -----------------------------------------------------------------------


def key_map(cfg: BertConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(genlab key, Hugging Face keys concatenated along dim 0) for every weight of ``cfg``'s Bert.

    Encoder keys carry the ``bert.`` prefix of the task architectures."""
    e = "bert.embeddings."
    rows: list[tuple[str, tuple[str, ...]]] = [
        ("tok_emb.weight", (e + "word_embeddings.weight",)),
        ("pos_emb.weight", (e + "position_embeddings.weight",)),
    ]
    if cfg.type_vocab_size:
        rows.append(("type_emb.weight", (e + "token_type_embeddings.weight",)))
    rows += [("emb_norm.weight", (e + "LayerNorm.weight",)), ("emb_norm.bias", (e + "LayerNorm.bias",))]
    for i in range(1 if cfg.share_layers else cfg.n_layer):
        for ours, theirs in _LAYER:
            for p in ("weight", "bias"):
                rows.append((f"blocks.{i}.{ours}.{p}", tuple(f"bert.encoder.layer.{i}.{t}.{p}" for t in theirs)))
    heads = {
        "pooler": "bert.pooler.dense",
        "mlm.dense": "cls.predictions.transform.dense",
        "mlm.norm": "cls.predictions.transform.LayerNorm",
        "nsp": "cls.seq_relationship",
        "classifier": "classifier",
        "token_classifier": "classifier",
        "qa": "qa_outputs",
    }
    present = {"pooler": cfg.pooler, "mlm.dense": "mlm" in cfg.heads, "mlm.norm": "mlm" in cfg.heads}
    present |= {"nsp": "nsp" in cfg.heads, "classifier": "sequence" in cfg.heads}
    present |= {"token_classifier": "token" in cfg.heads, "qa": "qa" in cfg.heads}
    for ours, theirs in heads.items():
        if present[ours]:
            rows += [(f"{ours}.weight", (f"{theirs}.weight",)), (f"{ours}.bias", (f"{theirs}.bias",))]
    if "mlm" in cfg.heads:
        rows.append(("mlm.decoder.bias", ("cls.predictions.bias",)))
        if not cfg.tie_embeddings:
            rows.append(("mlm.decoder.weight", ("cls.predictions.decoder.weight",)))
    return rows


def _normalise_key(key: str) -> str:
    """A checkpoint key in the form :func:`key_map` uses (``bert.`` prefix, weight/bias names)."""
    if key.endswith(".gamma") or key.endswith(".beta"):
        key = key.rsplit(".", 1)[0] + (".weight" if key.endswith(".gamma") else ".bias")
    if key.startswith(("embeddings.", "encoder.", "pooler.")):
        key = _PREFIX + key  # a BertModel checkpoint
    if key == "cls.predictions.decoder.bias":
        key = "cls.predictions.bias"  # the same tensor, saved under either name
    return key


def _expected_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(t.shape) for k, t in Bert(cfg).state_dict().items()}


def _short(keys: list[str]) -> str:
    return f"{keys[:3]}{'...' if len(keys) > 3 else ''}"


def hf_state_to_genlab(tensors: dict[str, torch.Tensor], cfg: BertConfig, where: str = "") -> dict[str, torch.Tensor]:
    """Hugging Face BERT tensors -> genlab ``Bert`` state dict; CheckpointError (one line) on any mismatch."""
    where = f"{where}: " if where else ""
    found: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if _SKIP.search(key):
            continue
        key = _normalise_key(key)
        if key == "cls.predictions.decoder.weight" and cfg.tie_embeddings:
            continue  # the decoder is the token embedding
        found[key] = t
    rows = key_map(cfg)
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


def genlab_state_to_hf(state: dict[str, torch.Tensor], cfg: BertConfig) -> dict[str, torch.Tensor]:
    """genlab ``Bert`` state dict -> Hugging Face tensors (``bert.``-prefixed; a tied decoder not stored).

    A model without heads is written as ``BertModel`` keys (no prefix)."""
    bare = not cfg.heads
    out = {}
    for ours, theirs in key_map(cfg):
        if ours not in state:
            raise CheckpointError(f"the genlab state dict has no '{ours}': not a Bert of this config")
        t = state[ours].detach().cpu()
        for key, part in zip(theirs, t.chunk(len(theirs), dim=0)):
            out[key.removeprefix(_PREFIX) if bare else key] = part.contiguous().clone()
    return out


def bert_from_hf_state(tensors: dict[str, torch.Tensor], cfg: BertConfig, where: str = "") -> Bert:
    """A genlab Bert (eval mode, fp32) holding Hugging Face BERT weights."""
    state = hf_state_to_genlab(tensors, cfg, where)
    with torch.device("meta"):  # no time spent on a random initialisation that is overwritten
        model = Bert(cfg)
    model.load_state_dict({k: t.float() for k, t in state.items()}, strict=False, assign=True)  # keys checked above
    if model.mlm is not None and cfg.tie_embeddings:
        model.mlm.decoder.weight = model.tok_emb.weight  # assign replaced tok_emb's parameter: tie again
    return model.eval()


# --- files -----------------------------------------------------------------------------


def load_hf_bert(hf_dir: Path) -> Bert:
    """A Hugging Face BERT folder -> genlab Bert in eval mode (config checked before weights are read).

    The pooler is kept when the weights hold one, whatever the architecture."""
    hf_dir = Path(hf_dir)
    where = str(hf_dir / CONFIG_FILE)
    hf_cfg = read_hf_config(hf_dir)
    hf_config_to_genlab(hf_cfg, where)  # refuse another architecture before reading weights
    tensors = read_hf_weights(hf_dir)
    needs_pooler = {"nsp", "sequence"} & set(ARCHITECTURES[check_architecture(hf_cfg, where)])
    has_pooler = any(_normalise_key(k).startswith("bert.pooler.") for k in tensors)
    cfg = hf_config_to_genlab(hf_cfg, where, pooler=has_pooler or bool(needs_pooler))
    return bert_from_hf_state(tensors, cfg, where=str(hf_dir))


def write_hf_bert(model: Bert, out_dir: Path) -> list[Path]:
    """Write ``config.json`` + ``model.safetensors`` for ``model`` into ``out_dir``; returns the paths.

    The architecture named in config.json (see :func:`architecture_for`) loads the folder with
    no missing or unexpected keys when the pooler matches it: a pooler on a masked-LM, token or
    QA model is written but ignored by transformers; a ``BertModel`` without one gets a
    random pooler from transformers (``last_hidden_state`` is unaffected)."""
    out_dir = Path(out_dir)
    cfg = model.config
    dtype = str(model.tok_emb.weight.dtype).removeprefix("torch.")
    hf_cfg = genlab_config_to_hf(cfg, dtype=dtype)  # refuses before writing anything
    tensors = genlab_state_to_hf(model.state_dict(), cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / CONFIG_FILE, out_dir / WEIGHTS_FILE
    config_path.write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    return [config_path, weights_path]
