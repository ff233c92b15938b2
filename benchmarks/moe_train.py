"""Dense vs mixture-of-experts GPT trained on the same real four-source mixture, same tokens.

Three runs, one after another, through genlab's training engine (``genlab.training.Trainer``
with ``causal_lm_loss``, the GPT recipe's loss): a dense GPT, an MoE GPT with the same active
parameters per token and the Switch balancing loss, and the same MoE GPT without balancing.

    dense     every FFN SwiGLU of width 4C
    moe       every FFN 8 SwiGLU experts of width 2C, top-2: 2 x 2C = 4C active (Mixtral's shape);
              4x the FFN parameters in all, the same per token
    moe-free  the same, aux_loss_coef = 0 (no balancing at all)

Data (all real): the complete works of Shakespeare (``shakespeare``), the King James Bible
(``kjv``), the Python standard library's function sources (``genlab.data.code.stdlib_pairs``)
and FOLDOC (``foldoc``), the first ``--chars`` characters of each; the last 5% of each is its
validation text. One byte-level BPE vocabulary is trained on the four training texts. Every
batch holds ``--batch / 4`` windows of each source, each window keeping its source label, so the
runs see the same tokens in the same order.

Reported (one JSON object on stdout):

- parameters: total and active per token (routed experts count K / E) of each model;
- validation loss curves (step, training seconds, loss) and the loss at equal tokens (the last
  step) and at equal wall time (each curve read at the shortest run's end);
- step time: each run's median over its log intervals, the ratio MoE / dense, and the same
  ratio measured again interleaved (dense step, MoE step, ...) after the runs, which a busy
  machine slows alike; training FLOPs per step counted by torch's FlopCounterMode;
- expert load, max / mean of the slots per expert: on each training batch (median of the
  last half of the run) and over the whole validation set, per MoE layer;
- routing by source: P(expert | source) per MoE layer on the validation set, each expert's
  dominant source and its share, and the mutual information I(source; expert) in bits
  (each of a token's K choices is one sample) beside its maximum, log2(4 sources) = 2 bits.

    PYTHONPATH=src python benchmarks/moe_train.py      # 3 runs of 260 steps, 1 thread: 15-20 min each
                                                       # on a 2-core machine loaded by 4 other jobs
    PYTHONPATH=src python benchmarks/moe_train.py --steps 20 --chars 200000   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
from machine import cpu_model  # benchmarks/machine.py

from genlab.core.seed import seed_everything
from genlab.data.code import stdlib_pairs
from genlab.data.sources import read_text
from genlab.layers.moe import MoEConfig
from genlab.models.gpt import GPT, GPTConfig
from genlab.objectives.causal_lm import causal_lm_loss
from genlab.tokenizers.bpe import BPETokenizer
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.flops import measure_flops
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime

SOURCES = ("shakespeare", "kjv", "python-code", "foldoc")


# --- data: four real sources, one BPE vocabulary, labelled windows ---------------------------


def source_texts(chars: int) -> dict[str, str]:
    """The first ``chars`` characters of each source (python-code: stdlib functions joined)."""
    texts = {
        "shakespeare": read_text("shakespeare"),
        "kjv": read_text("kjv"),
        "python-code": "\n\n".join(p.code for p in stdlib_pairs()),
        "foldoc": read_text("foldoc"),
    }
    return {k: texts[k][:chars] for k in SOURCES}


def split_text(text: str, val_fraction: float = 0.05) -> tuple[str, str]:
    """(train, val): the last ``val_fraction`` of the text, cut at a line start, is validation."""
    cut = text.rfind("\n", 0, int(len(text) * (1 - val_fraction))) + 1 or int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


@dataclasses.dataclass
class Mixture:
    tokenizer: BPETokenizer
    train: dict[str, np.ndarray]  # source -> token ids
    val: dict[str, np.ndarray]
    chars: dict[str, int]


def build_mixture(chars: int, vocab: int) -> Mixture:
    texts = source_texts(chars)
    parts = {k: split_text(t) for k, t in texts.items()}
    tok = BPETokenizer.train([tr for tr, _ in parts.values()], vocab_size=vocab)
    train = {k: tok.encode_np(tr) for k, (tr, _) in parts.items()}
    val = {k: tok.encode_np(va) for k, (_, va) in parts.items()}
    return Mixture(tok, train, val, {k: len(t) for k, t in texts.items()})


def labelled_batches(train: dict[str, np.ndarray], block: int, batch: int, seed: int) -> Iterator[tuple]:
    """(x (B, T), y (B, T), source (B,)) forever: batch / S random windows of each source, in order."""
    rng = np.random.default_rng(seed)
    per = batch // len(SOURCES)
    labels = torch.arange(len(SOURCES)).repeat_interleave(per)  # (B,)
    while True:
        rows = []
        for s in SOURCES:
            ids = train[s]
            starts = rng.integers(0, len(ids) - block - 1, size=per)
            rows += [ids[i : i + block + 1] for i in starts]
        w = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T + 1)
        yield w[:, :-1], w[:, 1:], labels


def val_batches(val: dict[str, np.ndarray], block: int, windows: int, batch: int) -> list[tuple]:
    """The first ``windows`` non-overlapping windows of each source's validation tokens, labelled."""
    rows, labels = [], []
    for s_i, s in enumerate(SOURCES):
        ids = val[s]
        n = min(windows, (len(ids) - 1) // block)
        rows += [ids[i * block : i * block + block + 1] for i in range(n)]
        labels += [s_i] * n
    w = torch.from_numpy(np.stack(rows).astype(np.int64))  # (N, T + 1)
    lab = torch.tensor(labels)
    return [(w[i : i + batch, :-1], w[i : i + batch, 1:], lab[i : i + batch]) for i in range(0, len(w), batch)]


# --- models ----------------------------------------------------------------------------


def configs(vocab: int, block: int, n_layer: int, n_embd: int, n_head: int, experts: int, top_k: int):
    base = GPTConfig(
        vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd, mlp_ratio=4.0,
        pos="rope", mlp="swiglu", norm="rmsnorm", bias=False, tie_embeddings=True,
    )  # fmt: skip
    width = 4 * n_embd // top_k  # K experts of this width = the dense FFN's 4C
    moe = MoEConfig(num_experts=experts, top_k=top_k, expert_hidden=width, aux_loss_coef=0.01)
    return {
        "dense": base,
        "moe": dataclasses.replace(base, moe=moe),
        "moe-free": dataclasses.replace(base, moe=dataclasses.replace(moe, aux_loss_coef=0.0)),
    }


def param_counts(model: GPT) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "active_per_token": total - sum(m.inactive_params() for m in model.moe_layers)}


def lm_loss(models, batch):
    x, y, _ = batch
    return causal_lm_loss(models["model"], (x, y))


# --- routing statistics ----------------------------------------------------------------


def mutual_information_bits(joint: np.ndarray) -> float:
    """I(S; X) = sum p(s, x) log2(p(s, x) / (p(s) p(x))) of a count table (S, X)."""
    p = joint / joint.sum()
    ps, px = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (ps @ px)[nz])).sum())


def load_ratio(counts) -> float:
    """max / mean of the per-expert slot counts."""
    c = np.asarray(counts, dtype=np.float64)
    return float(c.max() / max(c.mean(), 1e-12))


def routing_report(counts: np.ndarray) -> list[dict]:
    """counts (L, S, E) slots per layer, source, expert -> a summary per MoE layer."""
    out = []
    for layer, table in enumerate(counts):
        by_source = table / table.sum(1, keepdims=True)  # (S, E): P(expert | source)
        share = table / np.maximum(table.sum(0, keepdims=True), 1)  # (S, E): P(source | expert)
        dominant = share.argmax(0)  # (E,)
        out.append(
            {
                "layer": layer,
                "mutual_information_bits": round(mutual_information_bits(table), 4),
                "max_bits": round(math.log2(len(SOURCES)), 4),
                "load_max_over_mean": round(load_ratio(table.sum(0)), 3),
                "p_expert_given_source": {s: [round(v, 3) for v in by_source[i]] for i, s in enumerate(SOURCES)},
                "expert_dominant_source": [
                    {"expert": e, "source": SOURCES[dominant[e]], "share": round(float(share[dominant[e], e]), 3)}
                    for e in range(table.shape[1])
                ],  # fmt: skip
            }
        )
    return out


# --- one run -----------------------------------------------------------------------------


def train_one(name: str, cfg: GPTConfig, mix: Mixture, args, val: list[tuple]) -> tuple[dict, GPT]:
    seed_everything(args.seed)
    model = GPT(cfg)
    tc = TrainConfig(
        max_steps=args.steps, batch_size=args.batch, lr=args.lr, min_lr=args.lr / 10, warmup_steps=args.steps // 20,
        weight_decay=0.1, beta2=0.99, eval_interval=max(args.steps // args.evals, 1), log_interval=10,
        tensorboard=False, progress=False, seed=args.seed, device="cpu", dtype="float32",
    )  # fmt: skip
    runtime = Runtime.from_env(device="cpu", dtype="fp32")
    opt = adamw(model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2))
    layers = model.moe_layers
    E = layers[0].experts.num_experts if layers else 0
    routing: dict[str, np.ndarray] = {}
    train_load: list[list[float]] = []

    @torch.no_grad()
    def evaluate(models) -> dict[str, float]:
        m = models["model"]
        sums, counts = np.zeros(len(SOURCES)), np.zeros(len(SOURCES))
        table = np.zeros((len(layers), len(SOURCES), E))
        batch_load = []
        for x, y, lab in val:
            out = m(x)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
            ce = ce.view(y.shape).sum(1)  # (B,) summed over each window
            for s in range(len(SOURCES)):
                sums[s] += float(ce[lab == s].sum())
                counts[s] += int((lab == s).sum()) * y.size(1)
            for li, layer in enumerate(layers):
                idx = layer.routing.idx.view(x.size(0), x.size(1), -1)  # (B, T, K)
                for s in range(len(SOURCES)):
                    table[li, s] += torch.bincount(idx[lab == s].reshape(-1), minlength=E).numpy()
                batch_load.append(load_ratio(layer.load.numpy()))
        routing["table"], routing["batch_load"] = table, np.asarray(batch_load)
        metrics = {"val_loss": float(sums.sum() / counts.sum())}
        metrics.update({f"val_loss_{s}": float(sums[i] / counts[i]) for i, s in enumerate(SOURCES)})
        return metrics

    def after_step(step: int) -> None:
        if layers:
            train_load.append([load_ratio(layer.load.numpy()) for layer in layers])

    trainer = Trainer({"model": model}, {"model": opt}, [Phase(lm_loss)], runtime, tc, evaluate=evaluate,
                      after_step=after_step)  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(labelled_batches(mix.train, cfg.block_size, args.batch, args.seed))
    wall = time.perf_counter() - t0
    tokens_per_step = args.batch * cfg.block_size
    step_s = [tokens_per_step / r["items_per_s"] for r in trainer.history if "items_per_s" in r]
    steady = step_s[len(step_s) // 10 :] or step_s
    evals = [r for r in trainer.history if "val_loss" in r]
    last = evals[-1]
    flop_batch = next(labelled_batches(mix.train, cfg.block_size, args.batch, args.seed + 1))
    result = {
        "params": param_counts(model),
        "steps": trainer.step,
        "tokens": trainer.step * tokens_per_step,
        "train_seconds": round(trainer.elapsed, 1),
        "wall_seconds": round(wall, 1),
        "median_step_ms": round(1e3 * statistics.median(steady), 1),
        "train_flops_per_step": measure_flops(lm_loss, {"model": model}, flop_batch),
        "final_val_loss": round(last["val_loss"], 4),
        "final_val_loss_by_source": {s: round(last[f"val_loss_{s}"], 4) for s in SOURCES},
        "val_curve": [[r["step"], round(r["elapsed_s"], 1), round(r["val_loss"], 4)] for r in evals],
    }
    if layers:
        loads = np.asarray(train_load)  # (steps, L)
        half = loads[len(loads) // 2 :]
        result["train_load_max_over_mean"] = {
            "median_last_half_per_layer": [round(float(v), 3) for v in np.median(half, 0)],
            "worst_last_half_per_layer": [round(float(v), 3) for v in half.max(0)],
            "median_first_50_steps_per_layer": [round(float(v), 3) for v in np.median(loads[:50], 0)],
        }
        result["val_batch_load_max_over_mean_median"] = round(float(np.median(routing["batch_load"])), 3)
        result["routing"] = routing_report(routing["table"])
        mi = [r["mutual_information_bits"] for r in result["routing"]]
        result["mutual_information_bits_per_layer"] = mi
    print(f"[{name}] {json.dumps({k: v for k, v in result.items() if k not in ('routing', 'val_curve')})}",
          file=sys.stderr, flush=True)  # fmt: skip
    return result, model


def at_time(curve: list[list[float]], t: float) -> float:
    """The validation loss of a (step, seconds, loss) curve at training time t, linearly interpolated."""
    pts = [(0.0, None)] + [(c[1], c[2]) for c in curve]
    for (t0, l0), (t1, l1) in zip(pts, pts[1:], strict=False):
        if t <= t1:
            return round(l1 if l0 is None or t1 == t0 else l0 + (l1 - l0) * (t - t0) / (t1 - t0), 4)
    return curve[-1][2]


def interleaved_step_ratio(models: dict[str, GPT], mix: Mixture, args, reps: int) -> dict:
    """Training steps (forward, backward, AdamW) of each model in turn on the same batches; the
    median seconds of each and MoE / dense."""
    batches = labelled_batches(mix.train, models["dense"].config.block_size, args.batch, args.seed + 2)
    runs = {}
    for k, trained in models.items():
        m = GPT(trained.config)  # a fresh copy with the trained weights (the original keeps its graphs)
        m.load_state_dict(trained.state_dict())
        runs[k] = (m.train(), adamw(m, 1e-4, 0.1, (0.9, 0.99)))
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(reps + 2):
        batch = next(batches)
        for k, (m, opt) in runs.items():
            t = time.perf_counter()
            loss, metrics = (lambda o: o if isinstance(o, tuple) else (o, {}))(lm_loss({"model": m}, batch))
            (loss + metrics.get("aux_loss", 0)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= 2:  # two warm-up rounds
                times[k].append(time.perf_counter() - t)
    ms = {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()}
    return {"reps": reps, "median_step_ms": ms, "moe_over_dense": round(ms["moe"] / ms["dense"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chars", type=int, default=2_500_000, help="characters of each source")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="windows per batch, a multiple of 4 (one share per source)")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=192)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--steps", type=int, default=260)
    ap.add_argument("--evals", type=int, default=10, help="evaluations per run")
    ap.add_argument("--val-windows", type=int, default=24, help="validation windows per source")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--interleaved-reps", type=int, default=30)
    ap.add_argument("--runs", nargs="+", default=["dense", "moe", "moe-free"])
    args = ap.parse_args()
    if args.batch % len(SOURCES):
        ap.error(f"--batch must be a multiple of {len(SOURCES)} (one equal share per source)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    mix = build_mixture(args.chars, args.vocab)
    prep = time.perf_counter() - t0
    val = val_batches(mix.val, args.block, args.val_windows, args.batch)
    cfgs = configs(mix.tokenizer.vocab_size, args.block, args.n_layer, args.n_embd, args.n_head, args.experts,
                   args.top_k)  # fmt: skip
    results, models = {}, {}
    for name in args.runs:
        results[name], models[name] = train_one(name, cfgs[name], mix, args, val)
    out = {
        "benchmark": "moe-train",
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "dtype": "float32",
        "data": {
            "kind": "real",
            "sources": {
                s: {"chars": mix.chars[s], "train_tokens": len(mix.train[s]), "val_tokens": len(mix.val[s])}
                for s in SOURCES
            },  # fmt: skip
            "tokenizer": f"byte-level BPE, {mix.tokenizer.vocab_size} tokens, trained on the 4 training texts",
            "batch": f"{args.batch} windows of {args.block} tokens, {args.batch // len(SOURCES)} per source",
            "prep_seconds": round(prep, 1),
        },
        "model": {
            "n_layer": args.n_layer,
            "n_embd": args.n_embd,
            "n_head": args.n_head,
            "block": args.block,
            "ffn": "SwiGLU; dense width 4C; MoE: every layer, "
            f"{args.experts} experts of width {4 * args.n_embd // args.top_k}, top-{args.top_k}",
            "moe": "Switch aux loss 0.01 (N sum f_i P_i), softmax router, dropless",
            "moe-free": "the same with aux_loss_coef 0: no balancing",
        },  # fmt: skip
        "train": {"steps": args.steps, "lr": args.lr, "schedule": "cosine, 5% warmup", "optimizer": "AdamW"},
        "runs": results,
    }
    if "dense" in results:
        end = min(r["train_seconds"] for r in results.values())
        out["val_loss_at_equal_tokens"] = {k: r["final_val_loss"] for k, r in results.items()}
        at_end = {k: at_time(r["val_curve"], end) for k, r in results.items()}
        out["val_loss_at_equal_time"] = {"seconds": end, **at_end}
        dense = results["dense"]["median_step_ms"]
        out["step_time_over_dense"] = {k: round(r["median_step_ms"] / dense, 3) for k, r in results.items()}
        flops = results["dense"]["train_flops_per_step"]
        out["flops_per_step_over_dense"] = {k: round(r["train_flops_per_step"] / flops, 3) for k, r in results.items()}
        if "moe" in models:
            out["interleaved_step_time"] = interleaved_step_ratio(
                {"dense": models["dense"], "moe": models["moe"]}, mix, args, args.interleaved_reps
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
