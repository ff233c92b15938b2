"""Long-context quality: what each efficient attention costs against full attention, same steps.

Two parts; inside a part every run has the same model, data, steps, seed and batch, and only
``attention`` differs:

1. ``gpt``: a char-level GPT (rope, --gpt-layers x --dim) with context --context on the complete
   works of Shakespeare (genlab source ``shakespeare``, real), the last 10% of the characters held
   out (genlab.data.text.split). Full SDPA vs Longformer (each token sees itself and the
   --window keys before it) vs LSH (--lsh-rounds rounds, chunks of 64, context / 64 buckets).
   Val loss (nats per character) on fixed held-out windows at a few points and at the end.
2. ``encoder``: which KJV book a passage of --passage characters comes from (genlab source
   ``kjv``, real), the --books books with the most text, each split by position 70 / 15 / 15
   (genlab.data.bible_books: no passage crosses a split, val / test balanced per book). Input is
   [CLS] + the passage's characters (length passage + 1 = the Linformer's fixed length), a
   small BERT; the class is read by a linear layer from the mean of the final hidden states
   (``--enc-pool mean``, the default) or from BERT's own sequence head on [CLS]
   (``--enc-pool cls``). Full SDPA vs Longformer (window --enc-window,
   w/2 each side) vs Linformer (k = --linformer-k). Val accuracy at a few points, test
   accuracy once at the end (nothing is chosen on it), chance = 1 / books.

Training is a plain loop (genlab.training.optim.adamw, warmup + cosine from
genlab.training.schedules), one process, --threads threads; per-step time is the mean over the
steps after the first two, and the load average is read at the start and end of every run.
Prints one JSON object.

    python benchmarks/long_quality.py [--parts gpt encoder] [--steps 60] [--enc-steps 60] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_model  # benchmarks/machine.py

from genlab.data.bible_books import book_passages, kjv_books, largest_books
from genlab.data.sources import read_text
from genlab.data.text import RandomWindows, fixed_batches, split
from genlab.models.bert import Bert, BertConfig
from genlab.models.gpt import GPT, GPTConfig
from genlab.tokenizers.char import CharTokenizer
from genlab.training.optim import adamw
from genlab.training.schedules import warmup_cosine


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def summary(curve, train_losses, steps, tokens_per_step, t0, times, load_start, model) -> dict:
    """What every run of either part reports beside its own metric: curve, losses, budget, time, size."""
    return {
        "val_curve": curve,
        "train_loss_last10": round(statistics.fmean(train_losses[-10:]), 4),
        "steps": steps,
        "tokens": steps * tokens_per_step,
        "seconds": round(time.perf_counter() - t0, 1),
        "step_s": round(statistics.fmean(times[2:] or times), 3),
        "load_start_end": [load_start, load()],
        "params": sum(p.numel() for p in model.parameters()),
    }


def eval_points(steps: int, n: int) -> set[int]:
    """``n`` evaluation steps spread evenly, the last one included."""
    return {round(steps * (i + 1) / n) for i in range(n)}


def set_lr(opt: torch.optim.Optimizer, step: int, peak: float, steps: int) -> None:
    lr = warmup_cosine(step, peak, peak / 10, max(1, steps // 10), steps)
    for group in opt.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------------------------- part 1: GPT


def gpt_part(args: argparse.Namespace) -> dict:
    text = read_text("shakespeare")
    tok = CharTokenizer.train(text)
    ids = tok.encode_np(text)
    train, val = split(ids, 0.1)
    T, B = args.context, args.batch
    val_batches = fixed_batches(val, T, B, args.eval_batches, seed=1234)
    kinds = {
        "sdpa": {},
        f"longformer-{args.window}": {"attention": "longformer", "attention_window": args.window},
        f"lsh-{args.lsh_rounds}": {
            "attention": "lsh",
            "lsh_rounds": args.lsh_rounds,
            "lsh_chunk": min(64, T // 4),
            "lsh_buckets": max(2, T // min(64, T // 4)),
        },
    }
    runs = {}
    for name, opts in kinds.items():
        torch.manual_seed(args.seed)
        cfg = GPTConfig(
            vocab_size=tok.vocab_size, block_size=T, n_layer=args.gpt_layers, n_head=args.dim // 64,
            n_embd=args.dim, pos="rope", dropout=0.0, bias=False, **opts,
        )  # fmt: skip
        model = GPT(cfg)
        opt = adamw(model, args.lr, weight_decay=0.1)
        windows = RandomWindows(train, T, B, seed=args.seed)

        def evaluate(model=model) -> float:
            model.eval()
            with torch.no_grad():
                losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in val_batches]
            model.train()
            return round(statistics.fmean(losses), 4)

        curve, times, train_losses = [], [], []
        points = eval_points(args.steps, args.evals)
        load_start, t0 = load(), time.perf_counter()
        for step in range(args.steps):
            set_lr(opt, step, args.lr, args.steps)
            x, y = next(windows)
            s = time.perf_counter()
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            times.append(time.perf_counter() - s)
            train_losses.append(loss.item())
            if step + 1 in points:
                curve.append({"step": step + 1, "val_loss": evaluate()})
                print(json.dumps({"part": "gpt", "kind": name, **curve[-1]}), file=sys.stderr, flush=True)
        runs[name] = {"config": opts, "val_loss": curve[-1]["val_loss"],
                      **summary(curve, train_losses, args.steps, B * T, t0, times, load_start, model)}  # fmt: skip
    base = runs["sdpa"]["val_loss"]
    for r in runs.values():
        r["val_loss_minus_sdpa"] = round(r["val_loss"] - base, 4)
        r["step_time_vs_sdpa"] = round(r["step_s"] / runs["sdpa"]["step_s"], 3)
    return {
        "data": "shakespeare (complete works, real), char level, last 10% held out",
        "chars": len(ids),
        "vocab": tok.vocab_size,
        "context": T,
        "batch": B,
        "model": f"GPT {args.gpt_layers} layers x {args.dim}, {args.dim // 64} heads, rope",
        "val_tokens": args.eval_batches * B * T,
        "runs": runs,
    }


# ------------------------------------------------------------------------------ part 2: encoder


class MeanPooled(torch.nn.Module):
    """A Bert body whose class logits are a linear map of the mean of its final hidden states."""

    def __init__(self, body: Bert, labels: int):
        super().__init__()
        self.body, self.head = body, torch.nn.Linear(body.config.n_embd, labels)

    def forward(self, ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.body(ids, heads=()).hidden.mean(1)))  # (B, labels)


def encoder_part(args: argparse.Namespace) -> dict:
    books = kjv_books()
    names = largest_books(books, args.books)
    data = book_passages(books, names, args.passage, train_fraction=0.7, val_fraction=0.15)
    tok = CharTokenizer.train("".join(books.values()))
    cls_id = tok.vocab_size  # one extra id after the characters
    T, B = args.passage + 1, args.enc_batch

    def encode(texts: list[str]) -> torch.Tensor:
        rows = [np.concatenate([[cls_id], tok.encode_np(t)]) for t in texts]
        return torch.from_numpy(np.stack(rows))  # (B, T)

    val_x, val_y = data.split("val")
    test_x, test_y = data.split("test")
    val_ids, test_ids = encode(val_x), encode(test_x)
    kinds = {
        "sdpa": {},
        f"longformer-{args.enc_window}": {"attention": "longformer", "attention_window": args.enc_window},
        f"linformer-{args.linformer_k}": {"attention": "linformer", "linformer_k": args.linformer_k},
    }
    runs = {}
    for name, opts in kinds.items():
        torch.manual_seed(args.seed)
        cls = args.enc_pool == "cls"
        cfg = BertConfig(
            vocab_size=tok.vocab_size + 1, block_size=T, type_vocab_size=0, n_layer=args.enc_layers,
            n_head=args.dim // 64, n_embd=args.dim, pad_token_id=None, heads=["sequence"] if cls else [],
            pooler=cls, num_labels=len(names), dropout=0.1, attention_dropout=args.enc_attn_dropout, **opts,
        )  # fmt: skip
        model = MeanPooled(Bert(cfg), len(names)) if not cls else Bert(cfg)
        opt = adamw(model, args.enc_lr, weight_decay=0.01)
        rng = np.random.default_rng(args.seed)

        def accuracy(ids: torch.Tensor, labels: np.ndarray, model=model) -> float:
            model.eval()
            with torch.no_grad():
                preds = torch.cat([model(ids[i : i + B]).logits.argmax(-1) for i in range(0, len(ids), B)])
            model.train()
            return round(float((preds.numpy() == labels).mean()), 4)

        curve, times, train_losses = [], [], []
        points = eval_points(args.enc_steps, args.evals)
        load_start, t0 = load(), time.perf_counter()
        for step in range(args.enc_steps):
            set_lr(opt, step, args.enc_lr, args.enc_steps)
            texts, labels = data.train_batch(B, rng)
            x, y = encode(texts), torch.from_numpy(labels)
            s = time.perf_counter()
            loss = F.cross_entropy(model(x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            times.append(time.perf_counter() - s)
            train_losses.append(loss.item())
            if step + 1 in points:
                curve.append({"step": step + 1, "val_acc": accuracy(val_ids, val_y)})
                print(json.dumps({"part": "encoder", "kind": name, **curve[-1]}), file=sys.stderr, flush=True)
        runs[name] = {"config": opts, "val_acc": curve[-1]["val_acc"],
                      "test_acc": accuracy(test_ids, test_y),  # once, at the end
                      **summary(curve, train_losses, args.enc_steps, B * T, t0, times, load_start, model)}  # fmt: skip
    for r in runs.values():
        r["step_time_vs_sdpa"] = round(r["step_s"] / runs["sdpa"]["step_s"], 3)
    return {
        "data": "kjv (real): book passages split by position 70/15/15 inside each book",
        "books": names,
        "passage_chars": args.passage,
        "sequence": T,
        "batch": B,
        "model": f"BERT {args.enc_layers} layers x {args.dim}, {args.dim // 64} heads, "
        + ("[CLS] head" if args.enc_pool == "cls" else "linear head on the mean hidden state"),
        "attention_dropout": args.enc_attn_dropout,
        "lr": args.enc_lr,
        "val_passages": len(val_ids),
        "test_passages": len(test_ids),
        "chance": round(1 / len(names), 4),
        "runs": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=["gpt", "encoder"], choices=["gpt", "encoder"])
    p.add_argument("--steps", type=int, default=60, help="GPT training steps per attention")
    p.add_argument("--enc-steps", type=int, default=60, help="encoder training steps per attention")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke mode: context 256, 2 steps, one eval batch")
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--passage", type=int, default=4096)
    p.add_argument("--batch", type=int, default=2, help="GPT batch")
    p.add_argument("--enc-batch", type=int, default=4, help="encoder batch")
    p.add_argument("--enc-lr", type=float, default=1e-3, help="encoder peak learning rate")
    p.add_argument("--enc-pool", choices=["mean", "cls"], default="mean",
                   help="encoder class head: on the mean of the hidden states, or BERT's on [CLS]")  # fmt: skip
    p.add_argument("--enc-attn-dropout", type=float, default=0.0,
                   help="encoder attention dropout (0 keeps SDPA on its fused kernel)")  # fmt: skip
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--gpt-layers", type=int, default=2)
    p.add_argument("--enc-layers", type=int, default=2)
    p.add_argument("--window", type=int, default=256, help="GPT Longformer: keys back")
    p.add_argument("--enc-window", type=int, default=512, help="encoder Longformer: w/2 each side")
    p.add_argument("--linformer-k", type=int, default=256)
    p.add_argument("--lsh-rounds", type=int, default=4)
    p.add_argument("--books", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--evals", type=int, default=3, help="evaluation points per run")
    p.add_argument("--eval-batches", type=int, default=8, help="GPT val windows = this x batch")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.context, args.passage, args.steps, args.enc_steps = 256, 255, 2, 2
        args.window, args.enc_window, args.linformer_k, args.eval_batches, args.evals = 32, 32, 32, 1, 1
    torch.set_num_threads(args.threads)
    out: dict = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__, "load_start": load()}
    t0 = time.perf_counter()
    if "gpt" in args.parts:
        out["gpt"] = gpt_part(args)
    if "encoder" in args.parts:
        out["encoder"] = encoder_part(args)
    out["load_end"], out["seconds"] = load(), round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
