"""Captioning benchmark: Show & Tell (and Show, Attend and Tell) against the nearest-neighbour
baseline on held-out Tux Paint drawings and Fashion-MNIST scenes. Prints one JSON object.

Data: Tux Paint (Debian tuxpaint-stamps-default: real drawings with human-written English
captions, split by stamp group) and Fashion-MNIST scenes (generated: real Fashion-MNIST items on a
canvas with templated captions). Each run is a recipe (caption/tuxpaint, caption/scenes) trained
for ``--steps`` steps (one thread); the best checkpoint by validation CIDEr-D captions the test
split with beam search (the recipe's ``eval.beams``), and the nearest-neighbour baseline captions it
with the caption of the closest training image by cosine similarity of the same run's trained
encoder's pooled features. BLEU-4 (sacrebleu, corpus, all references) and CIDEr-D (pycocoevalcap)
on the test split; validation figures (greedy) beside them. Tuning was done on validation only.

    python benchmarks/caption.py [--variants tuxpaint:showtell scenes:showtell scenes:attend]
                                 [--steps tuxpaint=300 scenes=200] [--jobs 2] [--json-out caption.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py

from genlab.core.config import merge
from genlab.recipes import load_recipe, run_task

PRESETS = {("tuxpaint", "showtell"): "showtell-tuxpaint", ("tuxpaint", "attend"): "showattend-tuxpaint",
           ("scenes", "showtell"): "showtell-scenes", ("scenes", "attend"): "showattend-scenes"}  # fmt: skip
KINDS = {"tuxpaint": "real (human-written captions)", "scenes": "generated (real items, templated captions)"}


def one(source: str, decoder: str, steps: int, work: Path, over: dict | None = None) -> dict:
    torch.set_num_threads(1)
    over = merge({"model": {"preset": PRESETS[(source, decoder)]},
                  "train": {"max_steps": steps, "progress": False, "tensorboard": False}}, over or {})  # fmt: skip
    out = work / f"{source}-{decoder}"
    start = time.perf_counter()
    run_task(merge(load_recipe(f"caption/{source}"), over), run_dir=out)
    r = json.loads((out / "results.json").read_text())
    return {
        "data_kind": KINDS[source], "decoder": decoder, "preset": PRESETS[(source, decoder)], "steps": r["steps"],
        "batch_size": load_recipe(f"caption/{source}")["train"]["batch_size"], "parameters": r["parameters"],
        "train_seconds": round(r["train_seconds"], 1), "wall_seconds": round(time.perf_counter() - start, 1),
        "test_images": r["test_images"], "test_beams": r["test_beams"],
        "test": {"bleu4": round(r["test_bleu4"], 2), "cider": round(r["test_cider"], 4)},
        "nearest_neighbour_test": {"bleu4": round(r["nn_test_bleu4"], 2), "cider": round(r["nn_test_cider"], 4)},
        "val_greedy": {"bleu4": round(r["val_bleu4"], 2), "cider": round(r["val_cider"], 4)},
        "examples": r["test_examples"][:3],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["tuxpaint:showtell", "tuxpaint:attend", "scenes:showtell",
                                                      "scenes:attend"])  # fmt: skip
    p.add_argument("--steps", nargs="+", default=["tuxpaint=300", "scenes=200"], help="training steps per source")
    p.add_argument("--eval-interval", type=int, default=100, help="validation every N steps (greedy captions)")
    p.add_argument("--scenes-val", type=int, default=150, help="validation scenes (the test split keeps 500)")
    p.add_argument("--jobs", type=int, default=1, help="variants trained at once, one thread each")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    steps = {k: int(v) for k, v in (s.split("=") for s in args.steps)}
    work = Path(tempfile.mkdtemp(prefix="genlab-caption-bench-"))
    over = {"train": {"eval_interval": args.eval_interval}, "data": {"scenes_val": args.scenes_val}}
    out: dict = {"cpu": cpu_model(), "threads": 1, "jobs": args.jobs, "runs": {},
                 "nearest_neighbour": "caption of the closest training image, cosine similarity of the run's own "
                                      "trained encoder's pooled features"}  # fmt: skip
    jobs = [(v, *v.split(":")) for v in args.variants]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {v: pool.submit(one, source, decoder, steps[source], work,
                                  {**over, "data": {} if source != "scenes" else over["data"]})
                   for v, source, decoder in jobs}  # fmt: skip
        for v, _, _ in jobs:
            out["runs"][v] = futures[v].result()
    text = json.dumps(out, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
