"""T5, BART, PEGASUS and Marian: Hugging Face checkpoints <-> genlab :class:`~genlab.models.seq2seq.Seq2Seq`.

Four ``model_type`` values, one genlab family; each maps to a config (see the table in
:mod:`genlab.models.seq2seq`) and a key map. genlab fuses projections that Hugging Face keeps
apart, so a genlab weight is either one Hugging Face tensor or several concatenated along
the output dimension (rows), in this order:

    genlab                              T5 (i = layer)                          BART / PEGASUS / Marian
    encoder.i.attn.qkv                  encoder.block.i.layer.0.SelfAttention.  model.encoder.layers.i.self_attn.
                                        [q, k, v]                               [q_proj, k_proj, v_proj]
    encoder.i.attn.proj                 ...SelfAttention.o                      ...self_attn.out_proj
    encoder.i.ln1 / ln2                 ...layer.{0,1}.layer_norm               self_attn_layer_norm / final_layer_norm
    encoder.i.mlp.fc                    ...layer.1.DenseReluDense.wi            fc1
                                        (gated: [wi_0, wi_1])
    encoder.i.mlp.proj                  ...DenseReluDense.wo                    fc2
    decoder.i.cross.q / kv / proj       decoder.block.i.layer.1.EncDecAttention.  encoder_attn.q_proj / [k_proj, v_proj]
                                        q / [k, v] / o                           / out_proj
    decoder.i.ln_cross                  ...layer.1.layer_norm                   encoder_attn_layer_norm
    decoder.i.ln2, mlp                  ...layer.2.*                            final_layer_norm, fc1, fc2
    enc_emb (= dec_emb = head)          shared                                  model.shared
    enc_rel / dec_rel .table            {en,de}coder.block.0.layer.0.SelfAttention.relative_attention_bias
    enc_pos / dec_pos                   -                                       *.embed_positions (BART)
    enc_emb_norm / dec_emb_norm         -                                       *.layernorm_embedding (BART)
    enc_norm / dec_norm                 {en,de}coder.final_layer_norm           *.layer_norm (PEGASUS)
    final_logits_bias (V,)              -                                       final_logits_bias (1, V)

(* = model.encoder / model.decoder.)

Tied copies that Hugging Face state dicts may hold (``encoder.embed_tokens``, ``lm_head``
when tied) are accepted on reading and written on writing. PEGASUS's and Marian's
sinusoid tables are parameters in Hugging Face (frozen) and buffers in genlab: written from
the formula, skipped on reading.

transformers 5 always ties T5's ``lm_head`` to ``shared``; its ``tie_word_embeddings``
only says whether the decoder output is scaled by d_model^-1/2 (genlab ``scale_tied_head``).

Tier 2: imports genlab.core, genlab.models, torch, safetensors and json; never ``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from genlab.core.errors import CheckpointError, ConfigError
from genlab.layers.positional import sinusoidal_halves_table
from genlab.models.convert.gpt2 import CONFIG_FILE, WEIGHTS_FILE, read_hf_config, read_hf_weights
from genlab.models.seq2seq import Seq2Seq, Seq2SeqConfig

ARCHITECTURES = {
    "t5": "T5ForConditionalGeneration",
    "bart": "BartForConditionalGeneration",
    "pegasus": "PegasusForConditionalGeneration",
    "marian": "MarianMTModel",
}
#: Hugging Face ``activation_function`` -> genlab ``mlp`` (BART-style configs).
HF_TO_GENLAB_ACTIVATION = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "swish": "silu",
    "silu": "silu",
}
GENLAB_TO_HF_ACTIVATION = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "silu": "swish"}
T5_FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gated-gelu": "gated-gelu"}  # feed_forward_proj <-> mlp
#: The fixed shape of each BART-style family: what genlab sets and what the config cannot change.
_BART_LIKE = {
    "bart": dict(pos="learned", pos_offset=2, prenorm=False, embed_norm=True, final_norm=False),
    "pegasus": dict(pos="sinusoidal", sinusoid="halves", prenorm=True, embed_norm=False, final_norm=True),
    "marian": dict(pos="sinusoidal", sinusoid="halves", prenorm=False, embed_norm=False, final_norm=False),
}
_DEFAULT_IDS = {"bart": (1, 2, 2), "pegasus": (0, 1, 0), "marian": (58100, 0, 58100)}  # pad, eos, start


# --- configs ---------------------------------------------------------------------------


def _int(cfg: dict, key: str, where: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def _token(cfg: dict, key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, list):  # eos_token_id may be a list: the first is the one genlab stops on
        value = value[0] if value else default
    return default if value is None else int(value)


def model_type_of(cfg: dict, where: str = CONFIG_FILE) -> str:
    model_type = cfg.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"{where}: this is a {model_type or 'unknown'} checkpoint; genlab converts {sorted(ARCHITECTURES)}"
        )
    return model_type


def hf_config_to_genlab(cfg: dict, where: str = CONFIG_FILE) -> Seq2SeqConfig:
    """A Hugging Face T5 / BART / PEGASUS / Marian ``config.json`` (as a dict) -> :class:`Seq2SeqConfig`."""
    kind = model_type_of(cfg, where)
    if kind == "t5":
        ff = cfg.get("feed_forward_proj", "relu")
        if ff not in T5_FEED_FORWARD:
            raise ConfigError(
                f"{where}: feed_forward_proj={ff!r} is not supported; genlab runs {sorted(T5_FEED_FORWARD)}"
            )
        scale = cfg.get("scale_decoder_outputs", cfg.get("tie_word_embeddings", True) is not False)
        return Seq2SeqConfig(
            vocab_size=_int(cfg, "vocab_size", where),
            block_size=_int(cfg, "n_positions", where, 512),
            n_layer=_int(cfg, "num_layers", where),
            n_decoder_layer=_int(cfg, "num_decoder_layers", where, cfg.get("num_layers")),
            n_head=_int(cfg, "num_heads", where),
            head_dim=_int(cfg, "d_kv", where),
            n_embd=_int(cfg, "d_model", where),
            d_ff=_int(cfg, "d_ff", where),
            dropout=float(cfg.get("dropout_rate", 0.1)),
            bias=False,
            norm_bias=False,
            pos="t5_relative",
            rel_buckets=_int(cfg, "relative_attention_num_buckets", where, 32),
            rel_max_distance=_int(cfg, "relative_attention_max_distance", where, 128),
            mlp=T5_FEED_FORWARD[ff],
            norm="rmsnorm",
            norm_eps=float(cfg.get("layer_norm_epsilon", 1e-6)),
            prenorm=True,
            final_norm=True,
            scale_attention=False,
            tie_embeddings=True,
            scale_tied_head=bool(scale),
            pad_id=_token(cfg, "pad_token_id", 0),
            eos_id=_token(cfg, "eos_token_id", 1),
            decoder_start_id=_token(cfg, "decoder_start_token_id", 0),
        )
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if cfg.get(a) != cfg.get(b):
            raise ConfigError(f"{where}: {a}={cfg.get(a)} differs from {b}={cfg.get(b)}; genlab needs them equal")
    act = cfg.get("activation_function", "gelu")
    if act not in HF_TO_GENLAB_ACTIVATION:
        raise ConfigError(
            f"{where}: activation_function={act!r} is not supported; genlab runs {sorted(HF_TO_GENLAB_ACTIVATION)}"
        )
    vocab = _int(cfg, "vocab_size", where)
    share = True
    if kind == "marian":
        if cfg.get("decoder_vocab_size") not in (None, vocab):
            raise ConfigError(
                f"{where}: decoder_vocab_size={cfg['decoder_vocab_size']} differs from vocab_size={vocab}"
            )
        share = bool(cfg.get("share_encoder_decoder_embeddings", True))
    pad, eos, start = _DEFAULT_IDS[kind]
    return Seq2SeqConfig(
        vocab_size=vocab,
        block_size=_int(cfg, "max_position_embeddings", where, 1024),
        n_layer=_int(cfg, "encoder_layers", where),
        n_decoder_layer=_int(cfg, "decoder_layers", where),
        n_head=_int(cfg, "encoder_attention_heads", where),
        n_embd=_int(cfg, "d_model", where),
        d_ff=_int(cfg, "encoder_ffn_dim", where),
        dropout=float(cfg.get("dropout", 0.1)),
        mlp=HF_TO_GENLAB_ACTIVATION[act],
        norm="layernorm",
        norm_eps=1e-5,
        scale_embedding=bool(cfg.get("scale_embedding", False)),
        share_embeddings=share,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        final_logits_bias=True,
        pad_id=_token(cfg, "pad_token_id", pad),
        eos_id=_token(cfg, "eos_token_id", eos),
        decoder_start_id=_token(cfg, "decoder_start_token_id", start),
        init_std=float(cfg.get("init_std", 0.02)),
        **_BART_LIKE[kind],
    )


def hf_model_type(cfg: Seq2SeqConfig) -> str:
    """Which Hugging Face family a genlab config is; ConfigError naming what no family has."""
    if cfg.pos == "t5_relative":
        needs = dict(norm="rmsnorm", prenorm=True, final_norm=True, bias=False, scale_attention=False,
                     embed_norm=False, scale_embedding=False, share_embeddings=True, tie_embeddings=True,
                     final_logits_bias=False)  # fmt: skip
        kind = "t5"
    else:
        if cfg.pos == "learned":
            kind = "bart"
        elif cfg.sinusoid != "halves":
            raise ConfigError(
                "sinusoid='interleaved' (Vaswani's layout) has no Hugging Face class: Marian and PEGASUS put "
                "the sines first; set sinusoid='halves' to export"
            )
        else:
            kind = "pegasus" if cfg.prenorm else "marian"
        needs = dict(norm="layernorm", bias=True, norm_bias=True, scale_attention=True, scale_tied_head=False,
                     final_logits_bias=True, **_BART_LIKE[kind])  # fmt: skip
        if kind != "marian":
            needs["share_embeddings"] = True
    for field, value in needs.items():
        if getattr(cfg, field) != value:
            raise ConfigError(
                f"{field}={getattr(cfg, field)!r} cannot be written as {kind}, which needs {field}={value!r}"
            )
    if kind == "t5" and cfg.mlp not in T5_FEED_FORWARD:
        raise ConfigError(f"mlp={cfg.mlp!r} cannot be written as t5, which needs mlp in {sorted(T5_FEED_FORWARD)}")
    if kind != "t5" and cfg.mlp not in GENLAB_TO_HF_ACTIVATION:
        raise ConfigError(
            f"mlp={cfg.mlp!r} cannot be written as {kind}, which needs mlp in {sorted(GENLAB_TO_HF_ACTIVATION)}"
        )
    if kind != "t5" and cfg.norm_eps != 1e-5:
        raise ConfigError(f"norm_eps={cfg.norm_eps} cannot be written as {kind}, whose LayerNorms use 1e-5")
    if kind != "t5" and cfg.head_dim not in (0, cfg.n_embd // cfg.n_head):
        raise ConfigError(f"head_dim={cfg.head_dim} cannot be written as {kind}, whose head dim is d_model / heads")
    return kind


def genlab_config_to_hf(cfg: Seq2SeqConfig, dtype: str = "float32") -> dict:
    """:class:`Seq2SeqConfig` -> a Hugging Face ``config.json`` dict of the matching family."""
    kind = hf_model_type(cfg)
    ids = {"pad_token_id": cfg.pad_id, "eos_token_id": cfg.eos_id, "decoder_start_token_id": cfg.decoder_start_id}
    common = {"architectures": [ARCHITECTURES[kind]], "model_type": kind, "is_encoder_decoder": True,
              "vocab_size": cfg.vocab_size, "d_model": cfg.n_embd, "dtype": dtype, **ids}  # fmt: skip
    if kind == "t5":
        return {
            **common,
            "d_kv": cfg.dim_head,
            "d_ff": cfg.d_ff,
            "num_layers": cfg.n_layer,
            "num_decoder_layers": cfg.decoder_layers,
            "num_heads": cfg.n_head,
            "relative_attention_num_buckets": cfg.rel_buckets,
            "relative_attention_max_distance": cfg.rel_max_distance,
            "dropout_rate": cfg.dropout,
            "layer_norm_epsilon": cfg.norm_eps,
            "feed_forward_proj": cfg.mlp,
            "tie_word_embeddings": cfg.scale_tied_head,  # transformers 5 reads it as "scale the decoder output"
            "n_positions": cfg.block_size,
        }
    out = {
        **common,
        "max_position_embeddings": cfg.block_size,
        "encoder_layers": cfg.n_layer,
        "decoder_layers": cfg.decoder_layers,
        "encoder_attention_heads": cfg.n_head,
        "decoder_attention_heads": cfg.n_head,
        "encoder_ffn_dim": cfg.d_ff,
        "decoder_ffn_dim": cfg.d_ff,
        "activation_function": GENLAB_TO_HF_ACTIVATION[cfg.mlp],
        "dropout": cfg.dropout,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "scale_embedding": cfg.scale_embedding,
        "tie_word_embeddings": cfg.tie_embeddings,
        "init_std": cfg.init_std,
        "forced_eos_token_id": None,
    }
    if kind == "bart":
        out["bos_token_id"] = None
    if kind == "marian":
        out["decoder_vocab_size"] = cfg.vocab_size
        out["share_encoder_decoder_embeddings"] = cfg.share_embeddings
    return out


# --- state dicts -----------------------------------------------------------------------

Row = tuple[str, tuple[str, ...]]  # genlab key, the Hugging Face keys concatenated (rows) into it


def _t5_rows(cfg: Seq2SeqConfig) -> list[Row]:
    gated = cfg.mlp == "gated-gelu"
    fc = lambda p: (f"{p}.wi_0.weight", f"{p}.wi_1.weight") if gated else (f"{p}.wi.weight",)
    rows: list[Row] = [
        ("enc_emb.weight", ("shared.weight",)),
        ("enc_rel.table.weight", ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",)),
        ("dec_rel.table.weight", ("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",)),
        ("enc_norm.weight", ("encoder.final_layer_norm.weight",)),
        ("dec_norm.weight", ("decoder.final_layer_norm.weight",)),
    ]
    for stack, n in (("encoder", cfg.n_layer), ("decoder", cfg.decoder_layers)):
        for i in range(n):
            g, h = f"{stack}.{i}", f"{stack}.block.{i}.layer"
            a = f"{h}.0.SelfAttention"
            rows += [
                (f"{g}.ln1.weight", (f"{h}.0.layer_norm.weight",)),
                (f"{g}.attn.qkv.weight", (f"{a}.q.weight", f"{a}.k.weight", f"{a}.v.weight")),
                (f"{g}.attn.proj.weight", (f"{a}.o.weight",)),
            ]
            ff = 1
            if stack == "decoder":
                c, ff = f"{h}.1.EncDecAttention", 2
                rows += [
                    (f"{g}.ln_cross.weight", (f"{h}.1.layer_norm.weight",)),
                    (f"{g}.cross.q.weight", (f"{c}.q.weight",)),
                    (f"{g}.cross.kv.weight", (f"{c}.k.weight", f"{c}.v.weight")),
                    (f"{g}.cross.proj.weight", (f"{c}.o.weight",)),
                ]
            rows += [
                (f"{g}.ln2.weight", (f"{h}.{ff}.layer_norm.weight",)),
                (f"{g}.mlp.fc.weight", fc(f"{h}.{ff}.DenseReluDense")),
                (f"{g}.mlp.proj.weight", (f"{h}.{ff}.DenseReluDense.wo.weight",)),
            ]
    return rows


def _bart_rows(cfg: Seq2SeqConfig) -> list[Row]:
    kind = hf_model_type(cfg)
    wb = ("weight", "bias")
    rows: list[Row] = []
    if cfg.share_embeddings:
        rows.append(("enc_emb.weight", ("model.shared.weight",)))
    else:
        rows += [("enc_emb.weight", ("model.encoder.embed_tokens.weight",)),
                 ("dec_emb.weight", ("model.decoder.embed_tokens.weight",))]  # fmt: skip
    if not cfg.tie_embeddings:
        rows.append(("head.weight", ("lm_head.weight",)))
    for side, stack in (("enc", "encoder"), ("dec", "decoder")):
        m = f"model.{stack}"
        if kind == "bart":
            rows.append((f"{side}_pos.weight", (f"{m}.embed_positions.weight",)))
            rows += [(f"{side}_emb_norm.{p}", (f"{m}.layernorm_embedding.{p}",)) for p in wb]
        if kind == "pegasus":
            rows += [(f"{side}_norm.{p}", (f"{m}.layer_norm.{p}",)) for p in wb]
    for stack, n in (("encoder", cfg.n_layer), ("decoder", cfg.decoder_layers)):
        for i in range(n):
            g, h = f"{stack}.{i}", f"model.{stack}.layers.{i}"
            for p in wb:
                a = f"{h}.self_attn"
                rows += [
                    (f"{g}.ln1.{p}", (f"{h}.self_attn_layer_norm.{p}",)),
                    (f"{g}.attn.qkv.{p}", (f"{a}.q_proj.{p}", f"{a}.k_proj.{p}", f"{a}.v_proj.{p}")),
                    (f"{g}.attn.proj.{p}", (f"{a}.out_proj.{p}",)),
                    (f"{g}.ln2.{p}", (f"{h}.final_layer_norm.{p}",)),
                    (f"{g}.mlp.fc.{p}", (f"{h}.fc1.{p}",)),
                    (f"{g}.mlp.proj.{p}", (f"{h}.fc2.{p}",)),
                ]
                if stack == "decoder":
                    c = f"{h}.encoder_attn"
                    rows += [
                        (f"{g}.ln_cross.{p}", (f"{h}.encoder_attn_layer_norm.{p}",)),
                        (f"{g}.cross.q.{p}", (f"{c}.q_proj.{p}",)),
                        (f"{g}.cross.kv.{p}", (f"{c}.k_proj.{p}", f"{c}.v_proj.{p}")),
                        (f"{g}.cross.proj.{p}", (f"{c}.out_proj.{p}",)),
                    ]
    return rows


def key_map(cfg: Seq2SeqConfig) -> list[Row]:
    """(genlab key, Hugging Face keys) for every trained weight; several keys are concatenated by rows."""
    return _t5_rows(cfg) if hf_model_type(cfg) == "t5" else _bart_rows(cfg)


def _copies(cfg: Seq2SeqConfig) -> dict[str, str]:
    """Hugging Face keys that hold a tied copy of another key: copy -> original."""
    if hf_model_type(cfg) == "t5":
        return {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight",
                "lm_head.weight": "shared.weight"}  # fmt: skip
    out = {}
    if cfg.share_embeddings:
        out = {"model.encoder.embed_tokens.weight": "model.shared.weight",
               "model.decoder.embed_tokens.weight": "model.shared.weight"}  # fmt: skip
    if cfg.tie_embeddings:
        out["lm_head.weight"] = "model.shared.weight" if cfg.share_embeddings else "model.decoder.embed_tokens.weight"
    return out


def _derived(cfg: Seq2SeqConfig) -> dict[str, torch.Tensor]:
    """Hugging Face tensors genlab computes or keeps as buffers: sinusoid tables, final_logits_bias."""
    kind = hf_model_type(cfg)
    out = {}
    if kind in ("pegasus", "marian"):
        table = sinusoidal_halves_table(cfg.block_size, cfg.n_embd)
        out = {"model.encoder.embed_positions.weight": table, "model.decoder.embed_positions.weight": table.clone()}
    return out


def _expected_shapes(cfg: Seq2SeqConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(t.shape) for k, t in Seq2Seq(cfg).state_dict().items()}


def hf_state_to_genlab(
    tensors: dict[str, torch.Tensor], cfg: Seq2SeqConfig, where: str = ""
) -> dict[str, torch.Tensor]:
    """Hugging Face tensors -> a genlab ``Seq2Seq`` state dict (tied aliases included);
    CheckpointError (one line) on a missing, unexpected or misshapen key."""
    where = f"{where}: " if where else ""
    rows = key_map(cfg)
    copies, derived = _copies(cfg), _derived(cfg)
    kind = hf_model_type(cfg)
    needed = {k for _, keys in rows for k in keys}
    if kind != "t5":
        needed.add("final_logits_bias")
    found = {k: t for k, t in tensors.items() if k not in derived}
    for copy, original in copies.items():
        if copy in found and original not in found:
            found[original] = found[copy]  # a checkpoint that kept only the copy
        found.pop(copy, None)
    missing = sorted(needed - set(found))
    unexpected = sorted(set(found) - needed)
    if missing or unexpected:
        raise CheckpointError(
            f"{where}the weights do not match config.json: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''} (weights of another model or config?)"
        )
    shapes = _expected_shapes(cfg)
    out = {}
    for ours, keys in rows:
        t = torch.cat([found[k] for k in keys], dim=0) if len(keys) > 1 else found[keys[0]]
        if tuple(t.shape) != shapes[ours]:
            raise CheckpointError(
                f"{where}'{keys[0]}' gives {ours} the shape {tuple(t.shape)} but config.json implies {shapes[ours]}"
            )
        out[ours] = t.contiguous()
    if kind != "t5":
        out["final_logits_bias"] = found["final_logits_bias"].reshape(cfg.vocab_size)
    if cfg.share_embeddings:
        out["dec_emb.weight"] = out["enc_emb.weight"]
    if cfg.tie_embeddings:
        out["head.weight"] = out["dec_emb.weight"]
    return out


def genlab_state_to_hf(state: dict[str, torch.Tensor], cfg: Seq2SeqConfig) -> dict[str, torch.Tensor]:
    """A genlab ``Seq2Seq`` state dict -> every tensor of the Hugging Face model's state dict
    (tied copies and sinusoid tables included), each its own memory (safetensors-ready)."""
    out: dict[str, torch.Tensor] = {}
    for ours, keys in key_map(cfg):
        if ours not in state:
            raise CheckpointError(f"the genlab state dict has no '{ours}': not a {hf_model_type(cfg)}-shaped model")
        t = state[ours].detach().cpu()
        sizes = [t.size(0) // len(keys)] * len(keys)
        for k, part in zip(keys, t.split(sizes, dim=0)):
            out[k] = part.contiguous().clone()
    for copy, original in _copies(cfg).items():
        out[copy] = out[original].clone()
    out.update(_derived(cfg))
    if cfg.final_logits_bias:
        out["final_logits_bias"] = state["final_logits_bias"].detach().cpu().reshape(1, -1).clone()
    return out


def seq2seq_from_hf_state(tensors: dict[str, torch.Tensor], cfg: Seq2SeqConfig, where: str = "") -> Seq2Seq:
    """A genlab Seq2Seq (eval mode, fp32) holding Hugging Face weights."""
    model = Seq2Seq(cfg)
    model.load_state_dict(hf_state_to_genlab(tensors, cfg, where))
    return model.eval()


# --- files -----------------------------------------------------------------------------


def load_hf_seq2seq(hf_dir: Path) -> Seq2Seq:
    """A Hugging Face T5 / BART / PEGASUS / Marian folder -> genlab Seq2Seq in eval mode."""
    hf_dir = Path(hf_dir)
    cfg = hf_config_to_genlab(read_hf_config(hf_dir), where=str(hf_dir / CONFIG_FILE))
    return seq2seq_from_hf_state(read_hf_weights(hf_dir), cfg, where=str(hf_dir))


def write_hf_seq2seq(model: Seq2Seq, out_dir: Path) -> list[Path]:
    """Write ``config.json`` + ``model.safetensors`` for ``model``; returns the paths."""
    out_dir = Path(out_dir)
    dtype = str(model.enc_emb.weight.dtype).removeprefix("torch.")
    hf_cfg = genlab_config_to_hf(model.config, dtype=dtype)  # refuses before writing anything
    tensors = genlab_state_to_hf(model.state_dict(), model.config)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / CONFIG_FILE, out_dir / WEIGHTS_FILE
    config_path.write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(tensors, str(weights_path), metadata={"format": "pt"})
    return [config_path, weights_path]
