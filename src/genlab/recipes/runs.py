"""What every recipe shares: the model section of a recipe and the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from genlab.core.config import from_dict, load_yaml, merge, to_dict
from genlab.core.errors import ConfigError, RunDirError
from genlab.core.registry import preset
from genlab.models import config_class


def model_config(section: dict, vocab_size: int | None = None):
    """``{"preset": "gpt-nano", "n_layer": 6, ...}`` -> a model config (unknown keys are errors)."""
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
    return from_dict(cls, data, "model")


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to touch an existing run unless told to; changes nothing on disk."""
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir} holds no run to resume (no config.yaml): drop --resume to start one")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"{run_dir} already holds a run: add --resume to continue it, --overwrite to replace it, "
                "or --out to pick another directory"
            )
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir} is not empty and is not a genlab run: refusing to delete it")


def create_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if not resume and overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def read_run_config(run_dir: Path) -> dict:
    """The resolved recipe a run directory was trained with (its config.yaml)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a genlab run directory (no config.yaml)")
    return load_yaml(path)
