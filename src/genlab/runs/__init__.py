"""Tier 4: a run directory back into a model, for every family and task.

What serving, the studio, RAG and alignment (tiers 5-6) import to use a trained run; the
recipes (tier 7) that write run directories use it too. It builds models, so it sits above
``models/`` and ``training/`` (checkpoints) and below everything that serves a model.

Layout of a run directory (``genlab train RECIPE --out DIR`` writes it)::

    DIR/
        config.yaml              the resolved recipe: every default filled in; ``model`` holds the
                                 family and every field of the model config (``generator`` too for
                                 ELECTRA / CodeBERT pretraining)
        tokenizer.json           text runs only (char, BPE or WordPiece; see genlab.tokenizers)
        checkpoints/             see genlab.training.checkpoint: step-*/ + last.json, best.json;
                                 one ``<name>.safetensors`` per model the trainer held
                                 (``model``; a GAN: generator, discriminator, generator_ema;
                                 ELECTRA / CodeBERT: model = the discriminator, generator;
                                 a reward run, whose config has a ``head`` section: model = a
                                 ScoreModel, keys backbone.* + head.*)
        metrics.jsonl            one row per log step and per evaluation
        results.json             what the task measured at the end (test metrics, MFU, ...)
        samples/                 image runs: a grid per evaluation

:func:`load_run` reads it back::

    model, tokenizer, config = load_run("runs/shakespeare-char")       # the best checkpoint

One fallback rule: ``best`` falls back to ``last`` only while the run has no best checkpoint
(it stopped before its first evaluation, or has no evaluation); ``last`` never falls back.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch.nn as nn

from genlab.core.config import from_dict, load_yaml, merge, to_dict
from genlab.core.errors import CheckpointError, ConfigError, RunDirError, TokenizerError
from genlab.core.registry import preset
from genlab.models import FAMILIES, build_model, config_class, family_of
from genlab.models.bert import electra_pair
from genlab.models.gan import GAN, gan_parts
from genlab.models.heads import HeadConfig, ScoreModel
from genlab.tokenizers import TOKENIZER_FILE, WordPieceTokenizer, load_tokenizer
from genlab.training.checkpoint import find_checkpoint, load_weights

CHECKPOINTS = ("best", "last")
CONFIG_FILE = "config.yaml"
PARTS = ("model", "generator")  # what load_run(part=...) can return for ELECTRA / CodeBERT pretraining


class LoadedRun(NamedTuple):
    """A trained run: ``model`` in eval mode, its ``tokenizer`` (None for image runs), its resolved recipe."""

    model: nn.Module
    tokenizer: Any
    config: dict


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The resolved recipe a run directory was trained with (its config.yaml); RunDirError if none."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a genlab run directory (no {CONFIG_FILE})")
    return load_yaml(path)


def model_config(section: dict, vocab_size: int | None = None):
    """``{"preset": "gpt-nano", "n_layer": 6, ...}`` or ``{"family": "bert", ...}`` -> a model config
    (unknown keys are errors); ``vocab_size`` replaces the section's."""
    section = dict(section)
    name = section.pop("preset", None)
    family = section.pop("family", None)
    if name is not None:
        base = preset(name)
        cls = type(base)
        data = merge(to_dict(base), section)
    elif family is not None:
        cls, data = config_class(family), section
    else:
        raise ConfigError("the model section needs 'preset' (genlab list shows them) or 'family'")
    if vocab_size is not None:
        data["vocab_size"] = vocab_size
    if "moe" in data and not _has_field(cls, "moe"):
        having = sorted(f for f, (c, _) in FAMILIES.items() if _has_field(c, "moe"))
        raise ConfigError(
            f"model.moe: the {family or family_of(base)} family has no mixture-of-experts option; "
            f"the families that have one: {', '.join(having)}"
        )
    return from_dict(cls, data, "model")


def _has_field(cls: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cls))


def checkpoint_path(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint directory ``which`` names, by the one fallback rule (module docstring)."""
    if which not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be 'best' or 'last', got '{which}'")
    root = Path(run_dir) / "checkpoints"
    if which == "best" and not (root / "best.json").exists():
        which = "last"  # no evaluation has picked a best checkpoint yet
    if not (root / f"{which}.json").exists():
        raise CheckpointError(f"{run_dir} holds no checkpoint yet (no {root}/{which}.json): train it first")
    return find_checkpoint(root, which)


def run_tokenizer(run_dir: str | os.PathLike, config: dict | None = None):
    """The tokenizer saved in a run directory, or None when it has none (image runs)."""
    run_dir = Path(run_dir)
    if not (run_dir / TOKENIZER_FILE).is_file():
        family = ((config or {}).get("model") or {}).get("family")
        if family in ("gpt", "bert", "seq2seq"):
            raise TokenizerError(f"{run_dir} is a {family} run without {TOKENIZER_FILE}: the run is incomplete")
        return None
    return load_tokenizer(run_dir)


def check_vocab(tok, model_cfg, where: str) -> None:
    if tok is not None and hasattr(model_cfg, "vocab_size") and tok.vocab_size != model_cfg.vocab_size:
        raise TokenizerError(
            f"{where}: the tokenizer has {tok.vocab_size:,} tokens but the model's vocabulary has "
            f"{model_cfg.vocab_size:,}: they do not belong together (use the tokenizer the model was trained with)"
        )


def load_run(run_dir: str | os.PathLike, which: str = "best", part: str = "model") -> LoadedRun:
    """(model, tokenizer, config) of a run directory of any task, the model in eval mode.

    ``which``: ``best`` (the checkpoint the run's ``train.best_metric`` picked; ``last`` while there
    is none) or ``last``. A GAN comes back whole (generator, discriminator and the EMA generator,
    which :meth:`GAN.sample` then uses). An ELECTRA or CodeBERT pretraining run's model is the
    discriminator (the encoder fine-tuning starts from); ``part="generator"`` returns its small
    masked-LM generator instead, built beside it with the shared embeddings.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    section = config.get("model")
    if not isinstance(section, dict):
        raise RunDirError(f"{run_dir}/{CONFIG_FILE} has no model section: not a complete genlab run")
    if part not in PARTS:
        raise ConfigError(f"part must be one of {list(PARTS)}, got '{part}'")
    if which not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be 'best' or 'last', got '{which}'")
    cfg = model_config(section)
    tok = run_tokenizer(run_dir, config)
    if family_of(cfg) == "bert" and not isinstance(tok, WordPieceTokenizer):
        raise TokenizerError(
            f"{run_dir} has a {tok.kind} tokenizer; an encoder needs a BERT WordPiece tokenizer ([CLS], [SEP], [PAD])"
        )
    check_vocab(tok, cfg, str(run_dir))
    path = checkpoint_path(run_dir, which)
    if part == "generator":
        if not isinstance(config.get("generator"), dict) or config.get("objective") not in ("electra", "codebert"):
            raise ConfigError(
                f"{run_dir} has no generator: part='generator' needs an ELECTRA or CodeBERT pretraining run"
            )
        gen, disc = electra_pair(cfg, model_config(config["generator"]))
        load_weights(disc, path / "model.safetensors")
        load_weights(gen, path / "generator.safetensors")
        return LoadedRun(gen.eval(), tok, config)
    model = build_model(cfg)
    if (
        isinstance(config.get("head"), dict) and config["head"]
    ):  # a reward (or value) run: the decoder + its scalar head
        model = ScoreModel(model, from_dict(HeadConfig, config["head"], "head"))
    if isinstance(model, GAN):
        for name, module in gan_parts(model, include_ema=True).items():
            load_weights(module, path / f"{name}.safetensors")
        if model.generator_ema is not None:
            model.ema_updates.fill_(1)  # the stored EMA generator is trained: sample from it
    else:
        load_weights(model, path / "model.safetensors")
    return LoadedRun(model.eval(), tok, config)


def load_bert_run(run_dir: str | os.PathLike, which: str = "best") -> LoadedRun:
    """:func:`load_run` for a run that must hold a bert model (ConfigError naming the family otherwise)."""
    family = ((read_run_config(run_dir).get("model") or {}).get("family")) or "unknown"
    if family != "bert":
        raise ConfigError(
            f"{run_dir} is a {family} run; an encoder needs a bert run, a Hugging Face BERT folder or 'minilm'"
        )
    return load_run(run_dir, which)


__all__ = [
    "CHECKPOINTS",
    "LoadedRun",
    "checkpoint_path",
    "is_run_dir",
    "load_bert_run",
    "load_run",
    "model_config",
    "read_run_config",
    "run_tokenizer",
]
