"""Anomaly-detection benchmark: for each Fashion-MNIST class, a VAE trained on the nine others
scores the test set by negative ELBO (and IWAE NLL, the corrected scores of
genlab.eval.anomaly, and the IWAE NLL with the aggregate posterior of the training images as
the prior); the held-out class is the anomaly.

Prints one JSON object: AUROC per held-out class for each score, their means, and the
in-distribution test likelihoods of each VAE. Finished runs under --runs are reused.

    python benchmarks/anomaly.py [--recipe vae/fashion] [--classes 0 1 ...] [--set train.max_steps=3000 ...]
        [--background 0.2]   # the likelihood-ratio score too (a second VAE per class)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

from genlab.core.config import merge, parse_overrides
from genlab.recipes import load_recipe, run_task
from genlab.recipes.generative import evaluate_vae

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="vae/fashion")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-anomaly"), help="where the runs are kept")
    ap.add_argument("--classes", type=int, nargs="*", default=list(range(10)))
    ap.add_argument("--k", type=int, default=20, help="importance samples for the IWAE NLL")
    ap.add_argument(
        "--set", nargs="*", default=["train.max_steps=3000", "train.eval_interval=1000"], help="recipe overrides"
    )
    ap.add_argument(
        "--background",
        type=float,
        default=0.0,
        help="also train background VAEs on images with this fraction of pixels perturbed (e.g. 0.2) and score "
        "by the likelihood ratio (Ren et al. 2019); 0: no background",
    )
    args = ap.parse_args()
    rows = {}
    for c in args.classes:
        run_dir, bg_dir = args.runs / f"without-{c}", args.runs / f"background-{c}"
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
            train(args.recipe, run_dir, [*args.set, f"data.exclude_class={c}"])
            if args.background:
                train(args.recipe, bg_dir, [*args.set, f"data.exclude_class={c}", f"data.perturb={args.background}"])
            rows[CLASSES[c]] = evaluate_vae(run_dir, k=args.k, background=bg_dir if args.background else None)
        print(f"held out {CLASSES[c]}: {rows[CLASSES[c]]}", file=sys.stderr)
    scores = [key for key in next(iter(rows.values())) if key.startswith("auroc_")]
    print(
        json.dumps(
            {
                "recipe": args.recipe,
                "overrides": args.set,
                "background_perturb": args.background,
                "iwae_k": args.k,
                "threads": torch.get_num_threads(),
                **{key: {name: r[key] for name, r in rows.items()} for key in scores},
                "mean": {key: round(sum(r[key] for r in rows.values()) / len(rows), 4) for key in scores},
                "test_nelbo_in_distribution": {name: r["test_nelbo"] for name, r in rows.items()},
            }
        )
    )


def train(recipe: str, run_dir: Path, overrides: list[str]) -> None:
    """Train a run unless it has finished before."""
    if not (run_dir / "checkpoints" / "last.json").exists():
        overrides = ["train.progress=false", "train.tensorboard=false", *overrides]
        run_task(merge(load_recipe(recipe), parse_overrides(overrides)), run_dir=run_dir)


if __name__ == "__main__":
    main()
