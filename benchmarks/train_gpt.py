"""Training benchmark: throughput, MFU and time to a target validation loss.

Prints one JSON object. In the same run it measures the machine's matmul peak (fp32 and
bf16, 1024 x 1024) and trains two recipes on tinyshakespeare:

- the baseline: nanoGPT's CPU recipe reproduced in genlab (``gpt/nanogpt-cpu``);
  nanoGPT itself reached val 1.886 after 114 s on this machine (figure from the issue);
- genlab's recipes: ``gpt/shakespeare-char-fast`` (tuned for the time to 1.886) and the
  default ``gpt/shakespeare-char`` (tuned for the loss after 5 minutes).

and reports, for each, tokens/s, MFU against the fp32 peak, the training time at which
validation loss first fell to the target (1.886 by default), and the final loss.

    python benchmarks/train_gpt.py [--recipes gpt/shakespeare-char ...] [--baseline gpt/nanogpt-cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from genlab.core.config import merge, parse_overrides
from genlab.recipes import load_recipe, run_task


def matmul_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n x n matmul, best of repeated timings."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def flops_per_token(model: torch.nn.Module) -> float:
    """Training FLOPs per token: 6 N for the matmul weights + 12 L C T for attention scores
    (Kaplan et al. 2020, arXiv:2001.08361, Table 1; PaLM appendix B)."""
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() == 2)
    n -= cfg.block_size * cfg.n_embd if cfg.pos == "learned" else 0  # position table: a lookup, not a matmul
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def run(recipe_name: str, overrides: list[str], target: float, peak_fp32: float) -> dict:
    recipe = merge(
        load_recipe(recipe_name), parse_overrides(["train.progress=false", "sample.num_samples=0", *overrides])
    )
    out = Path(tempfile.mkdtemp(prefix="genlab-bench-"))
    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
            trainer = run_task(recipe, run_dir=out / "run")
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    model = trainer.models["model"]
    train_rows = [r for r in trainer.history if "items_per_s" in r]
    eval_rows = [r for r in trainer.history if "val_loss" in r]
    steady = train_rows[len(train_rows) // 10 :] or train_rows
    tokens = sum(r["items_per_s"] for r in steady) / len(steady)
    fpt = flops_per_token(model)
    hit = next((r for r in eval_rows if r["val_loss"] <= target), None)
    return {
        "recipe": recipe_name,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": trainer.step,
        "tokens_per_s": round(tokens),
        "model_gflop_per_s": round(tokens * fpt / 1e9, 1),
        "mfu_fp32": round(tokens * fpt / 1e9 / peak_fp32, 3),
        "train_seconds": round(trainer.elapsed, 1),
        "wall_seconds": round(wall, 1),
        "final_val_loss": round(eval_rows[-1]["val_loss"], 4),
        "best_val_loss": round(min(r["val_loss"] for r in eval_rows), 4),
        f"seconds_to_val_{target}": round(hit["elapsed_s"], 1) if hit else None,
        f"step_to_val_{target}": hit["step"] if hit else None,
        "val_curve": [[r["step"], round(r["elapsed_s"], 1), round(r["val_loss"], 4)] for r in eval_rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", nargs="+", default=["gpt/shakespeare-char-fast", "gpt/shakespeare-char"])
    ap.add_argument("--baseline", default="gpt/nanogpt-cpu", help="'' to skip the baseline")
    ap.add_argument("--target", type=float, default=1.886)
    ap.add_argument("--nanogpt-seconds", type=float, default=114.0, help="nanoGPT's own time to the target here")
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every recipe, e.g. train.max_minutes=1")
    args = ap.parse_args()

    peak32 = matmul_peak(torch.float32)
    peak16 = matmul_peak(torch.bfloat16, seconds=1.0)
    result = {
        "machine": {
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "matmul_gflops_fp32": round(peak32, 1),
            "matmul_gflops_bf16": round(peak16, 1),
            "torch": torch.__version__,
        }
    }
    if args.baseline:
        result["baseline"] = run(args.baseline, [], args.target, peak32)
    key = f"seconds_to_val_{args.target}"
    result["nanogpt_seconds_to_target"] = args.nanogpt_seconds
    result["genlab"] = {}
    for name in args.recipes:
        r = result["genlab"][name] = run(name, args.set, args.target, peak32)
        if r[key]:
            r["speedup_vs_nanogpt"] = round(args.nanogpt_seconds / r[key], 2)
            if args.baseline and result["baseline"][key]:
                r["speedup_vs_baseline_same_run"] = round(result["baseline"][key] / r[key], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
