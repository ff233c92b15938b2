"""VQA benchmark: question-only vs single-stream vs two-stream co-attention (ViLBERT-style), one
parameter budget, the same steps, on easy-VQA test and on the Fashion-MNIST scene test questions,
overall and per question type. Prints one JSON object.

Data (both generated): easy-VQA (PyPI easy-vqa 1.0: procedural shapes, templated questions; test =
its own 1,000 test images, 9,673 questions) and the Fashion-MNIST scenes (``genlab.data.scenes``:
real Fashion-MNIST items placed on a canvas, templated questions; left out with a note when that
module is not there). Each variant is the recipe ``vqa/easy-vqa`` or ``vqa/scenes`` with
``model.streams`` = text | one | two; the single-stream and question-only models get the MLP width
that matches the two-stream parameter count (:func:`genlab.models.vilbert.budgeted`). Every run
trains ``--steps`` steps of ``--batch`` questions from the same seed, picks its best checkpoint on
validation accuracy (evaluated every ``--steps / 3`` steps), and is scored once on test, beside the
answer prior (the most frequent training answer of each question type). One thread.

    python benchmarks/vqa.py [--steps 600] [--batch 64] [--json-out vqa.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py

from genlab.recipes import load_recipe
from genlab.recipes.vqa import evaluate_vqa, train

VARIANTS = ("text", "one", "two")


def run_variant(recipe_name: str, streams: str, args: argparse.Namespace, scenes: dict | None, root: Path) -> dict:
    steps, batch = args.steps, args.batch
    recipe = load_recipe(recipe_name)
    recipe["model"] = {**recipe["model"], "streams": streams, "n_embd": args.width, "n_head": args.heads}
    recipe["train"] = {**recipe["train"], "max_steps": steps, "batch_size": batch,
                       "eval_interval": max(1, steps // 3), "warmup_steps": min(100, steps // 10),
                       "progress": False, "tensorboard": False, "log_interval": 50, "dtype": "fp32"}  # fmt: skip
    if scenes is not None:
        recipe["data"] = {**recipe["data"], "scenes": scenes}
    run_dir = root / f"{recipe_name.replace('/', '-')}-{streams}"
    start = time.perf_counter()
    trainer = train(recipe, run_dir)
    seconds = time.perf_counter() - start
    results = json.loads((run_dir / "results.json").read_text())
    test = evaluate_vqa(run_dir, "best", "test")
    return {
        "streams": streams,
        "parameters": results["vqa_parameters"],
        "steps": trainer.step,
        "train_seconds": round(results["train_seconds"], 1),
        "wall_seconds": round(seconds, 1),
        "val_accuracy": round(results["val_accuracy"], 4),
        "test_accuracy": round(test["accuracy"], 4),
        "test_prior_accuracy": round(test["prior_accuracy"], 4),
        "test_per_type": {t: round(v["accuracy"], 4) for t, v in test["per_type"].items()},
        "test_prior_per_type": {t: round(v["prior_accuracy"], 4) for t, v in test["per_type"].items()},
        "test_questions": test["n"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--scenes", type=int, nargs=3, default=[3000, 400, 1000], metavar=("TRAIN", "VAL", "TEST"))
    ap.add_argument("--width", type=int, default=32, help="model.n_embd of both streams")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--skip-easy-vqa", action="store_true")
    ap.add_argument("--skip-scenes", action="store_true")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out: dict = {
        "benchmark": "vqa: question-only vs single-stream vs two-stream co-attention, one parameter budget",
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": args.steps,
        "batch_size": args.batch,
        "width": args.width,
        "model": "recipe vqa/easy-vqa or vqa/scenes with model.n_embd=--width, model.n_head=--heads",
        "datasets": {},
        "notes": [],
    }
    sets = []
    if not args.skip_easy_vqa:
        sets.append(("easy-vqa", "vqa/easy-vqa", None,
                     "generated (procedural shapes, templated questions: PyPI easy-vqa 1.0)"))  # fmt: skip
    if args.skip_scenes:
        out["notes"].append("--skip-scenes: the Fashion-MNIST scene questions are left out")
    elif importlib.util.find_spec("genlab.data.scenes") is not None:
        counts = dict(zip(("train", "val", "test"), args.scenes))
        sets.append(("scenes", "vqa/scenes", counts,
                     "generated (real Fashion-MNIST items placed on a canvas, templated questions)"))  # fmt: skip
    else:
        out["notes"].append("genlab.data.scenes is not in this tree: the Fashion-MNIST scene questions are left out")
    with tempfile.TemporaryDirectory(prefix="genlab-vqa-bench-") as tmp:
        for name, recipe, scenes, kind in sets:
            rows = [run_variant(recipe, s, args, scenes, Path(tmp)) for s in VARIANTS]
            out["datasets"][name] = {"data_kind": kind, "recipe": recipe, "variants": rows}
            print(json.dumps({name: rows}), flush=True)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
