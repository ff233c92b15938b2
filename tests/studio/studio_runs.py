"""Tiny runs for the studio tests: a GPT (2 steps), a CNN, two VAEs (one trained without class 3)
and a GAN on scikit-learn's 8x8 digits (2 steps each), all under one RUNS_DIR.

Not a conftest.py: tests/conftest.py is imported by name (``from conftest import tiny_recipe``)."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_recipe

from genlab.recipes import load_recipe, run_task

QUICK = {"max_steps": 2, "eval_interval": 1, "progress": False, "tensorboard": False, "log_interval": 1}


def image_recipe(name: str) -> dict:
    r = load_recipe(name)
    r["train"].update(QUICK)
    if r["task"] in ("vae", "gan"):
        r["grid_size"] = 4
    return r


def make_runs(root: Path) -> Path:
    text = Path(__file__).parents[1] / "fixtures" / "shakespeare-40k.txt"
    run_task(tiny_recipe(text, **QUICK), run_dir=root / "gpt")
    run_task(image_recipe("cnn/digits"), run_dir=root / "cnn")
    run_task(image_recipe("vae/digits"), run_dir=root / "vae")
    held = image_recipe("vae/digits")
    held["data"]["exclude_class"] = 3
    run_task(held, run_dir=root / "sweep" / "vae-no3")  # a nested run: found too
    run_task(image_recipe("gan/digits"), run_dir=root / "gan")
    return root
