"""Generative-model benchmark: a VAE and a GAN on Fashion-MNIST, scored in the same run.

Trains the recipes (default vae/fashion and gan/fashion; or reuses finished runs), then prints
one JSON object: the VAE's test negative ELBO and IWAE NLL (k importance samples, nats per
image), and for both models FID-FMNIST and the Inception-style score of ``--n`` samples in the
features of a genlab classifier run (trained here from cnn/fashion unless ``--classifier`` is
given), with the real train-vs-test distance as the floor.

    python benchmarks/generative.py [--runs DIR] [--vae-run D] [--gan-run D] [--classifier D]
        [--set-vae train.max_steps=2000 ...] [--set-gan ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from genlab.core.config import merge, parse_overrides
from genlab.recipes import load_recipe, run_task
from genlab.recipes.generative import evaluate_vae, score_samples


def trained(recipe_name: str, overrides: list[str], run_dir: Path) -> dict:
    """Train ``recipe_name`` into ``run_dir`` unless a finished run is there; returns its steps and
    training seconds (from the run's log, so also for a reused run)."""
    if not (run_dir / "checkpoints" / "last.json").exists():
        recipe = merge(load_recipe(recipe_name), parse_overrides(["train.progress=false", *overrides]))
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
            run_task(recipe, run_dir=run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "elapsed_s" in r][-1]
    return {"steps": last["step"], "train_seconds": round(last["elapsed_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-generative"), help="where the runs are kept")
    ap.add_argument("--vae", default="vae/fashion", help="VAE recipe")
    ap.add_argument("--gan", default="gan/fashion", help="GAN recipe")
    ap.add_argument("--set-vae", nargs="*", default=[], help="VAE recipe overrides")
    ap.add_argument("--set-gan", nargs="*", default=[], help="GAN recipe overrides")
    ap.add_argument("--classifier", type=Path, help="a finished cnn/fashion run (default: train one)")
    ap.add_argument("--n", type=int, default=10_000, help="samples for FID")
    ap.add_argument("--k", type=int, default=100, help="importance samples for the IWAE NLL")
    args = ap.parse_args()
    clf = args.classifier or args.runs / "classifier"
    seconds = {
        "classifier": trained("cnn/fashion", [], clf),
        "vae": trained(args.vae, [f"fid_classifier={clf}", *args.set_vae], args.runs / "vae"),
        "gan": trained(args.gan, [f"fid_classifier={clf}", *args.set_gan], args.runs / "gan"),
    }
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        vae_likelihood = evaluate_vae(args.runs / "vae", k=args.k)
        vae_quality = score_samples(args.runs / "vae", clf, args.n)
        gan_quality = score_samples(args.runs / "gan", clf, args.n)
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "recipes": {"vae": args.vae, "gan": args.gan},
                "training": seconds,
                "vae": {**vae_likelihood, **vae_quality},
                "gan": gan_quality,
                "gan_fid_below_vae": gan_quality["fid_fmnist"] < vae_quality["fid_fmnist"],
                "eval_seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
