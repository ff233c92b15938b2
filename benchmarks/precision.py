"""Precision benchmark: fp32 vs bf16 autocast training throughput on this machine.

Prints one JSON object. For each model it times the training step the engine runs
(forward + causal-LM loss + backward + grad-norm clip + fused AdamW step) in fp32 and
under bf16 autocast, in the same process and alternating the two (so that a neighbour's
load hits both alike), and reports tokens/s per dtype and the ratio bf16 / fp32. It also
reports the CPU model name (``lscpu``), whether PyTorch sees native bf16
(``cpu_has_native_bf16()``) and the thread count. These figures choose what
``dtype=auto`` means in ``genlab.training.runtime.pick_dtype``.

Models (the shapes of the default recipes in recipes/configs/gpt/, random tokens):

- ``char``: ``gpt-char`` with rope, no bias (``gpt/shakespeare-char``), 16 x 128 tokens
- ``char-fast``: the same with 2 layers, context 64 (``gpt/shakespeare-char-fast``), 24 x 64
- ``nano``: ``gpt-nano``, no bias (``gpt/nanogpt-cpu``), 12 x 64
- ``gpt2``: GPT-2 small (124M), 1 x 256 by default; not in the default run: on a CPU
  without native bf16 one bf16 step takes minutes.

    python benchmarks/precision.py [--models char char-fast nano] [--steps 5] [--rounds 2] [--warmup 3]
        [--threads 2] [--device cpu]
    python benchmarks/precision.py --models gpt2 --steps 1 --rounds 1 --warmup 0   # ~4 min here
    python benchmarks/precision.py --models gpt2 --dtypes fp32 --steps 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import time

import torch

from genlab.core.registry import preset
from genlab.models import build_model
from genlab.objectives.causal_lm import causal_lm_loss
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime, cpu_has_native_bf16

# name -> (preset, field overrides, batch size, context); batch / context as in the recipes.
MODELS = {
    "char": ("gpt-char", {"pos": "rope", "bias": False}, 16, 128),
    "char-fast": ("gpt-char", {"n_layer": 2, "block_size": 64, "pos": "rope", "bias": False}, 24, 64),
    "nano": ("gpt-nano", {"bias": False}, 12, 64),
    "gpt2": ("gpt2", {}, 1, 256),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_model_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def step_fn(name: str, device: torch.device, batch: int | None, context: int | None):
    """A fresh model + optimizer and a closure that runs one training step under ``dtype``."""
    base, overrides, b, t = MODELS[name]
    b, t = batch or b, context or t
    cfg = dataclasses.replace(preset(base), dropout=0.0, **overrides)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    opt = adamw(model, lr=1e-4, weight_decay=0.1, betas=(0.9, 0.99))
    x = torch.randint(cfg.vocab_size, (b, t), device=device)
    y = torch.randint(cfg.vocab_size, (b, t), device=device)

    def step(dtype: torch.dtype) -> None:
        rt = Runtime(device, dtype)
        opt.zero_grad(set_to_none=True)
        with rt.autocast():
            loss = causal_lm_loss(model, (x, y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, b * t, sum(p.numel() for p in model.parameters())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, device: torch.device, dtypes, steps: int, rounds: int, warmup: int, batch, context) -> dict:
    step, tokens, params = step_fn(name, device, batch, context)
    for key in dtypes:
        for _ in range(warmup):
            step(DTYPES[key])
    rates: dict[str, list[float]] = {k: [] for k in dtypes}
    for _ in range(rounds):
        for key in dtypes:
            dtype = DTYPES[key]
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step(dtype)
            sync(device)
            rates[key].append(steps * tokens / (time.perf_counter() - t0))
    tps = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    row = {
        "model": name,
        "params": params,
        "tokens_per_step": tokens,
        "tokens_per_s": tps,
        "all_rounds": {k: [round(r, 1) for r in v] for k, v in rates.items()},
    }
    if len(tps) == 2:
        row["bf16_over_fp32"] = round(tps["bf16"] / tps["fp32"], 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=["char", "char-fast", "nano"], choices=sorted(MODELS))
    ap.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per dtype per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating fp32/bf16 rounds; the median is reported")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per dtype first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="override every model's batch size")
    ap.add_argument("--context", type=int, default=None, help="override every model's context length")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    rows = [
        measure(m, device, args.dtypes, args.steps, args.rounds, args.warmup, args.batch, args.context)
        for m in args.models
    ]
    print(
        json.dumps(
            {
                "cpu": cpu_model_name(),
                "cpu_has_native_bf16": cpu_has_native_bf16(),
                "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "steps": args.steps,
                "rounds": args.rounds,
                "models": rows,
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
