"""Tier 6: recipes = a YAML file under ``configs/<family>/<name>.yaml`` + a generic entry point.

``genlab train gpt/shakespeare-char model.n_layer=6`` loads the YAML, merges the dotted
overrides, and hands the result to the entry point named by its ``task`` key.
"""

from __future__ import annotations

import difflib
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


def run_task(recipe: dict, **kwargs) -> object:
    from genlab.recipes import classify, encoder, generative, lm

    tasks = {"lm": lm.train, "classify": classify.train, "vae": generative.train_vae, "gan": generative.train_gan,
             "encoder-pretrain": encoder.pretrain, "encoder-classify": encoder.train_classifier,
             "encoder-distill": encoder.distill, "encoder-retrieval": encoder.train_retrieval}  # fmt: skip
    task = recipe.get("task", "lm")
    if task not in tasks:
        raise ConfigError(f"unknown task '{task}'; choose from {sorted(tasks)}")
    return tasks[task](recipe, **kwargs)
