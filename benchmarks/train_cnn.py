"""CNN benchmark: Fashion-MNIST test accuracy and training time of a recipe (default cnn/fashion).

Prints one JSON object: test accuracy of the best checkpoint (selected on 5,000 held-out
training images), training seconds (evaluation excluded), images/s and the validation curve.

    python benchmarks/train_cnn.py [--recipe cnn/fashion] [--set train.max_steps=2000 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from genlab.core.config import merge, parse_overrides
from genlab.recipes import load_recipe, run_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="cnn/fashion")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides")
    args = ap.parse_args()
    recipe = merge(load_recipe(args.recipe), parse_overrides(["train.progress=false", *args.set]))
    out = Path(tempfile.mkdtemp(prefix="genlab-bench-"))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
            trainer = run_task(recipe, run_dir=out / "run")
        results = json.loads((out / "run" / "results.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rates = [r["items_per_s"] for r in trainer.history if "items_per_s" in r]
    evals = [r for r in trainer.history if "val_accuracy" in r]
    print(
        json.dumps(
            {
                "recipe": args.recipe,
                "threads": torch.get_num_threads(),
                "params": sum(p.numel() for p in trainer.models["model"].parameters()),
                "steps": trainer.step,
                "test_accuracy": round(results["test_accuracy"], 4),
                "train_seconds": round(trainer.elapsed, 1),
                "images_per_s": round(sum(rates) / max(len(rates), 1)),
                "val_curve": [[r["step"], round(r["elapsed_s"], 1), round(r["val_accuracy"], 4)] for r in evals],
            }
        )
    )


if __name__ == "__main__":
    main()
