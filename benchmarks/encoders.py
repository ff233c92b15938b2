"""Encoder benchmark: code search, fortune topics, distillation, and ELECTRA vs MLM at equal compute.

Prints one JSON object (training logs go to stderr):

- ``code_search``: MRR and recall@1/5/10 of finding each of 1,000 standard-library test functions
  (packages never seen in pretraining) from its docstring summary among all 1,000, by the cosine of
  mean-pooled embeddings, for MiniLM zero-shot, an untrained bert-mini (the lexical floor of
  mean pooling with the same tokenizer), genlab MLM-only pretraining and CodeBERT-style bimodal
  pretraining (MLM + replaced-token detection). The two pretraining runs share one tokenizer and
  one batch and model size; the MLM run gets the step count that makes its training FLOPs
  (``torch.utils.flop_counter`` per token x padded tokens) equal to CodeBERT's. Then the same
  code-search fine-tuning (``bert/code-search``: in-batch InfoNCE on the training pairs, the best
  checkpoint by validation MRR) from random weights, from MLM and from CodeBERT-style pretraining.
- ``fortunes``: 17-topic test accuracy of a bert-mini trained from scratch, MiniLM fine-tuned,
  bert-mini fine-tuned from MLM and from ELECTRA pretraining, and a DistilBERT-style student of the
  best genlab classifier (by validation loss) with its inference speed-up (test set, same batch
  size and threads, in one process).
- ``electra_vs_mlm``: the two pretraining runs on the fortunes corpus at equal training FLOPs, and
  the test accuracy each gives after the same fine-tuning; for ELECTRA the discriminator's last
  validation: accuracy against its base rate (always "original"), recall on the replaced tokens
  and AUROC.

Every genlab model on one task uses one WordPiece vocabulary (Hugging Face tokenizers' training
is not deterministic, so independently trained vocabularies would add noise to the comparisons).

    OMP_NUM_THREADS=1 python benchmarks/encoders.py [--out DIR] [--only PART] [--reuse] [--quick]

PART is code-search, fortunes or electra-vs-mlm (the last part alone: the two pretraining runs
and their two fine-tunings).

``--quick`` cuts every budget to a few steps (a smoke test of the script, minutes in all).
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
from genlab.data.corpora import CodeData, code_split
from genlab.eval.retrieval import CODE_SEARCH_MAX_LENGTH, code_search
from genlab.models.bert import Bert
from genlab.recipes import load_recipe, run_task
from genlab.recipes.encoder_pretrain import pretrain_steps_for
from genlab.runs import model_config, read_run_config
from genlab.runs.encoders import Encoder, load_encoder
from genlab.runs.evaluate import evaluate_encoder

REUSE = False  # --reuse: a run directory with a results.json is not trained again


def train(name: str, run_dir: Path, quick: bool, **over: object) -> dict:
    """Train recipe ``bert/<name>`` with dotted overrides into ``run_dir``; its results.json."""
    if REUSE and (run_dir / "results.json").is_file():
        return json.loads((run_dir / "results.json").read_text())
    items = [f"{k}={v}" for k, v in over.items()] + ["train.progress=false", "train.tensorboard=false"]
    if quick:
        items += [f"train.max_steps={over.get('train.max_steps', 6)}", "train.eval_interval=3",
                  "train.warmup_steps=1", "train.eval_batches=2"]  # fmt: skip
    recipe = merge(load_recipe(f"bert/{name}"), parse_overrides(items))
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
        run_task(recipe, run_dir=run_dir, overwrite=True)
    return json.loads((run_dir / "results.json").read_text())


def matched_steps(name: str, reference: dict, **over: object) -> int:
    """Steps of recipe ``bert/<name>`` whose training FLOPs come closest to the ``reference`` run's."""
    recipe = merge(load_recipe(f"bert/{name}"), parse_overrides([f"{k}={v}" for k, v in over.items()]))
    with contextlib.redirect_stdout(sys.stderr):
        return pretrain_steps_for(recipe, reference["train_flops"])


def compute(r: dict) -> dict:
    """What a pretraining run spent: steps, sequences per step, padded tokens, FLOPs, seconds."""
    keys = ("steps", "batch_size", "tokens", "flops_per_token", "train_flops", "train_seconds", "encoder_parameters")
    return {k: float(f"{r[k]:.4g}") if isinstance(r[k], float) else r[k] for k in keys}


def discriminator(r: dict) -> dict:
    """An ELECTRA run's last validation of its discriminator: accuracy with the base rate it must
    beat (always answering "original"), recall on the replaced tokens and AUROC (0.5 = chance), beside
    the AUROC token identity alone reaches at best against a unigram-stage generator (above it: context)."""
    keys = ("val_disc_accuracy", "val_disc_base_rate", "val_disc_recall", "val_disc_auroc", "val_disc_identity_auroc",
            "val_gen_accuracy")  # fmt: skip
    return {k: round(r.get(k, float("nan")), 4) for k in keys}


def rounded(metrics: dict) -> dict:
    return {k: round(metrics[k], 4) for k in ("mrr", "recall@1", "recall@5", "recall@10")}


def code_search_table(out: Path, quick: bool) -> dict:
    limit = 100 if quick else 0
    rows = {"minilm_zero_shot": rounded(evaluate_encoder("minilm", "code-search", limit=limit))}
    codebert = train("code-codebert", out / "code-codebert", quick)
    tok = {"data.tokenizer": out / "code-codebert"}
    steps = matched_steps("code-mlm", codebert, **tok)
    mlm = train("code-mlm", out / "code-mlm", quick, **tok, **{"train.max_steps": steps})
    # The floor: bert-mini with random weights and the same vocabulary (mean pooling of token embeddings).
    cfg = model_config(read_run_config(out / "code-mlm")["model"])
    torch.manual_seed(0)
    untrained = Encoder(Bert(cfg).eval(), load_encoder(out / "code-mlm").tokenizer, cfg.block_size, "untrained")
    pairs = code_split(CodeData()).test[: limit or None]
    rows["untrained_bert_mini"] = rounded(code_search(untrained, pairs))
    for name, run, r in (("genlab_mlm_only", "code-mlm", mlm), ("codebert_style", "code-codebert", codebert)):
        rows[name] = {**rounded(evaluate_encoder(out / run, "code-search", limit=limit)), "compute": compute(r)}
    delta = {k: round(rows["codebert_style"][k] - rows["genlab_mlm_only"][k], 4) for k in ("mrr", "recall@10")}
    # the same code-search fine-tuning from each starting point (random weights: the same tokenizer)
    starts = {"scratch": {"init": "scratch", **tok}, "from_mlm": {"init": out / "code-mlm"},
              "from_codebert": {"init": out / "code-codebert"}}  # fmt: skip
    tuned = {}
    for name, over in starts.items():
        r = train("code-search", out / f"search-{name}", quick, **over)
        tuned[name] = {k.removeprefix("test_"): round(v, 4) for k, v in r.items() if k.startswith("test_")}
        tuned[name].update(steps=r["steps"], train_seconds=round(r["train_seconds"], 1))
    tuned["codebert_minus_mlm"] = {k: round(tuned["from_codebert"][k] - tuned["from_mlm"][k], 4)
                                   for k in ("mrr", "recall@10")}  # fmt: skip
    return {"queries": len(pairs), "candidates": len(pairs), "max_length": CODE_SEARCH_MAX_LENGTH,
            "zero_shot": {**rows, "codebert_minus_mlm": delta}, "finetuned": tuned,
            "flops_ratio_codebert_over_mlm": round(codebert["train_flops"] / mlm["train_flops"], 4)}  # fmt: skip


def pretrain_pair(out: Path, quick: bool) -> tuple[dict, dict]:
    """ELECTRA on the fortunes, then MLM with its tokenizer at the step count of equal FLOPs."""
    electra = train("fortunes-electra", out / "fortunes-electra", quick)
    tok = {"data.tokenizer": out / "fortunes-electra"}
    steps = matched_steps("fortunes-mlm", electra, **tok)
    mlm = train("fortunes-mlm", out / "fortunes-mlm", quick, **tok, **{"train.max_steps": steps})
    return electra, mlm


def finetuned(out: Path, quick: bool) -> dict:
    """The same topic fine-tuning from the MLM and from the ELECTRA run."""
    return {
        "from_mlm": train("fortunes-finetune", out / "cls-mlm", quick, init=out / "fortunes-mlm"),
        "from_electra": train("fortunes-finetune", out / "cls-electra", quick, init=out / "fortunes-electra"),
    }


def versus_table(electra: dict, mlm: dict, rows: dict) -> dict:
    """ELECTRA vs MLM at equal FLOPs: compute, the pretraining metrics, the fine-tuned accuracy."""
    versus_delta = rows["from_electra"]["test_accuracy"] - rows["from_mlm"]["test_accuracy"]
    return {
        "mlm": {**compute(mlm), "val_mlm_accuracy": round(mlm.get("val_mlm_accuracy", float("nan")), 4),
                "finetuned_test_accuracy": round(rows["from_mlm"]["test_accuracy"], 4)},
        "electra": {**compute(electra), **discriminator(electra),
                    "finetuned_test_accuracy": round(rows["from_electra"]["test_accuracy"], 4)},
        "flops_ratio_electra_over_mlm": round(electra["train_flops"] / mlm["train_flops"], 4),
        "accuracy_electra_minus_mlm": round(versus_delta, 4),
    }  # fmt: skip


def electra_table(out: Path, quick: bool) -> dict:
    """``--only electra-vs-mlm``: the two pretraining runs and the two fine-tunings alone."""
    electra, mlm = pretrain_pair(out, quick)
    return {"electra_vs_mlm": versus_table(electra, mlm, finetuned(out, quick))}


def fortunes_table(out: Path, quick: bool) -> dict:
    electra, mlm = pretrain_pair(out, quick)
    tok = {"data.tokenizer": out / "fortunes-electra"}
    runs = {
        "scratch": train("fortunes-scratch", out / "cls-scratch", quick, **tok),
        **finetuned(out, quick),
        "minilm_finetuned": train("fortunes-minilm", out / "cls-minilm", quick),
    }
    genlab = ("scratch", "from_mlm", "from_electra")
    teacher = min(genlab, key=lambda k: runs[k]["best_val_loss"])
    student = train("fortunes-distill", out / "cls-student", quick, teacher=out / f"cls-{teacher.split('_')[-1]}")
    rows = {k: {"test_accuracy": round(r["test_accuracy"], 4), "steps": r["steps"], "parameters": r["parameters"],
                "train_seconds": round(r["train_seconds"], 1)} for k, r in runs.items()}  # fmt: skip
    distilled = {
        "teacher": teacher,
        "teacher_layers": student["teacher_layers"],
        "student_layers": student["student_layers"],
        "teacher_test_accuracy": round(student["teacher_test_accuracy"], 4),
        "student_test_accuracy": round(student["test_accuracy"], 4),
        "accuracy_retained": round(student["accuracy_retained"], 4),
        "speedup": round(student["speedup"], 3),
        "teacher_seconds": round(student["teacher_seconds"], 3),
        "student_seconds": round(student["student_seconds"], 3),
        "speed_batch_size": student["speed_batch_size"],
        "threads": student["threads"],
        "parameters": [student["teacher_parameters"], student["parameters"]],
    }
    results = json.loads((out / "cls-scratch" / "results.json").read_text())
    versus = versus_table(electra, mlm, rows)
    fortunes = {"classes": len(results["classes"]), "chance": round(1 / len(results["classes"]), 4), **rows,
                "distilled_student": distilled}  # fmt: skip
    return {"fortunes": fortunes, "electra_vs_mlm": versus}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument(
        "--only",
        choices=["code-search", "fortunes", "electra-vs-mlm"],
        help="one part of the benchmark (default: code-search and fortunes, which includes electra-vs-mlm)",
    )
    ap.add_argument("--quick", action="store_true", help="a few steps per run: a smoke test of the script")
    ap.add_argument("--reuse", action="store_true", help="keep the finished runs under --out (delete one to redo it)")
    args = ap.parse_args()
    global REUSE
    REUSE = args.reuse
    out = args.out or Path(tempfile.mkdtemp(prefix="genlab-bench-encoders-"))
    start = time.perf_counter()
    try:
        report = {"threads": torch.get_num_threads(), "torch": torch.__version__, "quick": args.quick}
        if args.only in (None, "code-search"):
            report["code_search"] = code_search_table(out, args.quick)
        if args.only in (None, "fortunes"):
            report.update(fortunes_table(out, args.quick))
        if args.only == "electra-vs-mlm":
            report.update(electra_table(out, args.quick))
        report["seconds"] = round(time.perf_counter() - start)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
