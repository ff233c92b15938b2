"""Gato benchmark: one generalist against a specialist per task, each the same size and given the
steps that task got in the generalist (steps x its mixture share). Prints one table and one JSON object.

The generalist is the recipe gato/generalist (a 4-layer x 128 GPT; ``--steps`` gradient steps over the
mixture of text, Fashion-MNIST classification as text, captions of Fashion-MNIST scenes and Tux Paint
drawings, CartPole-v1 and Acrobot-v1 expert trajectories). Each specialist is the same recipe with
every other task's weight 0 and ``train.max_steps`` = the batches its task got in the generalist
(:meth:`genlab.recipes.gato.Mixture.schedule`: the interleave is deterministic, so these are exact).
The tokenizer, the model shape, the batch of each task, the peak and final learning rates (a cosine
over the run's own steps; warmup min(the generalist's, a tenth of its steps)) and the evaluation are
the same; each model is evaluated from its best checkpoint (lowest validation loss).

Figures (higher is better but for the loss): text validation loss (Shakespeare, real), Fashion-MNIST
test accuracy (real; the answer read from greedy generated text), caption BLEU (sacrebleu) on
Fashion-MNIST scenes (generated) and Tux Paint drawings (real), CartPole-v1 and Acrobot-v1 mean
returns over ``--episodes`` live episodes (generated: simulated environments), each prompted with a
held-out expert episode. Target: the generalist within 10% of each specialist (relative to the
specialist's figure, in the direction that is worse).

Runs one after another in one process, one thread (set OMP_NUM_THREADS=1):

    python benchmarks/gato.py [--steps 600] [--episodes 100] [--json-out gato.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py

from genlab.core.config import from_dict, merge
from genlab.recipes import load_recipe, run_task
from genlab.recipes.gato import KINDS, GatoRecipe, Mixture, active_tasks

METRIC = {"text": "text_val_loss", "fashion": "fashion_accuracy", "scenes": "scenes_bleu", "tuxpaint": "tuxpaint_bleu",
          "CartPole-v1": "CartPole-v1_return", "Acrobot-v1": "Acrobot-v1_return"}  # fmt: skip


def gap(task: str, generalist: float, specialist: float) -> float | None:
    """How much worse the generalist is, relative to the specialist (negative: better); None when the
    specialist's figure is 0 (a BLEU of 0: no relative gap; the generalist is then not worse iff >= 0)."""
    worse = generalist - specialist if task == "text" else specialist - generalist
    if specialist == 0:
        return None
    return worse / abs(specialist)


def within(task: str, generalist: float, specialist: float, tolerance: float = 0.10) -> bool:
    g = gap(task, generalist, specialist)
    return generalist >= specialist if g is None else g <= tolerance


def train_and_eval(recipe: dict, out: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    run_task(recipe, run_dir=out, overwrite=True)
    return json.loads((out / "results.json").read_text()), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600, help="gradient steps of the generalist")
    p.add_argument("--episodes", type=int, default=100, help="live episodes per environment")
    p.add_argument("--fashion", type=int, default=1000, help="Fashion-MNIST test images")
    p.add_argument("--captions", type=int, default=200, help="caption test examples per caption task")
    p.add_argument("--eval-interval", type=int, default=0, help="validation every N steps (0: steps / 4)")
    p.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides for every run, e.g. model.n_layer=2")
    a = p.parse_args()
    torch.set_num_threads(1)
    from genlab.core.config import parse_overrides

    interval = a.eval_interval or max(1, a.steps // 4)
    base = merge(load_recipe("gato/generalist"), {
        "eval": {"episodes": a.episodes, "fashion": a.fashion, "captions": a.captions},
        "train": {"max_steps": a.steps, "eval_interval": interval, "progress": False, "tensorboard": False},
    })  # fmt: skip
    base = merge(base, parse_overrides(a.set))
    shares = active_tasks(from_dict(GatoRecipe, base))
    steps = Mixture.schedule(shares, a.steps)
    root = a.out or Path(tempfile.mkdtemp(prefix="gato-bench-"))
    started = time.perf_counter()
    gen, gen_s = train_and_eval(base, root / "generalist")
    rows, seconds = [], {"generalist": gen_s}
    for task, n in steps.items():
        # the same recipe, this task alone, the steps it got; the cosine decays over those steps
        tasks = {k: (1.0 if k == task else 0.0) for k in base["tasks"]}
        spec_recipe = merge(base, {"tasks": tasks, "train": {"max_steps": n, "eval_interval": max(1, n // 4),
                                                             "warmup_steps": min(base["train"].get("warmup_steps", 100),
                                                                                 max(1, n // 10))}})  # fmt: skip
        spec, s = train_and_eval(spec_recipe, root / f"specialist-{task}")
        seconds[task] = s
        m = METRIC[task]
        g, sp = gen["metrics"][m], spec["metrics"][m]
        rows.append({"task": task, "metric": m, "generalist": g, "specialist": sp, "gap": gap(task, g, sp),
                     "within_10pct": within(task, g, sp), "specialist_steps": n,
                     "data_kind": KINDS["control" if task.endswith("-v1") else task]})  # fmt: skip
    result = {
        "benchmark": "gato", "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "model": {k: base["model"][k] for k in ("n_layer", "n_head", "n_embd", "block_size")},
        "parameters": gen["parameters"], "generalist_steps": a.steps, "task_shares": shares, "task_steps": steps,
        "episodes": a.episodes, "fashion_test_images": a.fashion, "caption_test_examples": a.captions,
        "rows": rows, "all_within_10pct": all(r["within_10pct"] for r in rows),
        "generalist_examples": gen.get("examples"), "seconds": seconds,
        "total_seconds": time.perf_counter() - started, "data_kinds": gen.get("data_kinds"),
    }  # fmt: skip
    print(f"{'task':<12} {'metric':<20} {'generalist':>11} {'specialist':>11} {'gap':>7}  steps")
    for r in rows:
        shown = "n/a" if r["gap"] is None else f"{100 * r['gap']:.1f}%"
        print(f"{r['task']:<12} {r['metric']:<20} {r['generalist']:>11.4g} {r['specialist']:>11.4g} {shown:>7}  "
              f"{r['specialist_steps']}")  # fmt: skip
    text = json.dumps(result)
    print(text)
    if a.json_out:
        a.json_out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
