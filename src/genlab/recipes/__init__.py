"""Tier 7: recipes = a YAML file under ``configs/<family>/<name>.yaml`` + a generic entry point.

``genlab train gpt/shakespeare-char model.n_layer=6`` loads the YAML, merges the dotted
overrides, and hands the result to the entry point named by its ``task`` key (:data:`TASKS`).

One module per task (``lm``, ``classify``, ``generative`` (vae, gan), ``encoder_pretrain``,
``encoder_classify``, ``encoder_distill``, ``encoder_retrieval``, ``seq2seq`` (with
``seq2seq-pretrain``), ``reader`` (``qa``, the extractive RAG reader), ``rl`` (``rl``: PPO / REINFORCE;
``rl-bc``: behaviour cloning), ``vqa`` (``vqa``, ``vqa-pretrain``: ViLBERT-style VQA), ``caption``
(Show & Tell), ``gato`` (the generalist),
``chat``: the alignment stages ``chat-sft`` / ``-reward`` / ``-dpo`` /
``-grpo`` / ``-ppo``) plus the commands ``embed`` and ``convert``; what they share is
:mod:`genlab.recipes.runner` (set-up, resume, results.json, teardown) and
:mod:`genlab.recipes.grid`. A task module never imports another: what two tasks need lives in a
lower tier (a run directory back into a model: :func:`genlab.runs.load_run`).
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from genlab.core.config import load_yaml
from genlab.core.errors import ConfigError

CONFIGS = Path(__file__).parent / "configs"


def list_recipes() -> list[str]:
    return sorted(str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.yaml"))


def load_recipe(name: str) -> dict:
    """A recipe by name (``gpt/shakespeare-char``) or by path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_yaml(path)
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, list_recipes(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown recipe '{name}'{hint}; run 'genlab list' to see the recipes")
    return load_yaml(path)


#: task name (the YAML's ``task`` key) -> (module under genlab.recipes, entry point)
TASKS = {
    "lm": ("lm", "train"),
    "classify": ("classify", "train"),
    "forecast": ("forecast", "train"),
    "vae": ("generative", "train_vae"),
    "gan": ("generative", "train_gan"),
    "encoder-pretrain": ("encoder_pretrain", "pretrain"),
    "encoder-classify": ("encoder_classify", "train_classifier"),
    "encoder-distill": ("encoder_distill", "distill"),
    "encoder-retrieval": ("encoder_retrieval", "train_retrieval"),
    "seq2seq": ("seq2seq", "train"),
    "seq2seq-pretrain": ("seq2seq", "pretrain"),
    "qa": ("reader", "train_reader"),
    "rl": ("rl", "train"),
    "rl-bc": ("rl", "train_bc"),
    "gato": ("gato", "train"),
    "vqa": ("vqa", "train"),
    "vqa-pretrain": ("vqa", "pretrain"),
    "caption": ("caption", "train"),
    **{stage: ("chat", "train") for stage in ("chat-sft", "chat-reward", "chat-dpo", "chat-grpo", "chat-ppo")},
}


def run_task(recipe: dict, **kwargs) -> object:
    """Train ``recipe`` with the entry point of its ``task`` (default ``lm``)."""
    task = recipe.get("task", "lm")
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; choose from {sorted(TASKS)}")
    module, entry = TASKS[task]
    return getattr(importlib.import_module(f"genlab.recipes.{module}"), entry)(recipe, **kwargs)
