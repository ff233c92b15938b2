"""FSDP2 vs DDP with 2 CPU processes (gloo): memory per process and training throughput.

Prints one JSON object. For each mode (``ddp``, ``fsdp``) it starts ``torchrun
--nproc_per_node=2`` on this file's worker, which builds the model, wraps it with
``Runtime.wrap`` (``train.parallel``), and trains with the genlab engine (``Trainer``: forward,
causal-LM loss, backward, clip, fused AdamW) on random tokens (generated data: the content
does not change memory or speed). Each process reports:

- ``state_bytes``: the bytes of the training state it holds: its (shard of the) parameters,
  their gradients and the AdamW moments, counted from the tensors themselves (a DTensor's local shard)
- ``peak_rss_bytes`` / ``rss_before_bytes``: the process's peak resident memory over its life
  (building the full model before sharding it included), and before the model was built (the
  Python + torch baseline)
- ``steady_peak_rss_bytes``: the peak resident memory of the training steps after the first: at the
  end of step 1 freed heap memory is returned to the system (glibc ``malloc_trim``) and the peak
  is reset (``/proc/self/clear_refs``), so it counts what a step holds: the training state, the
  gathered blocks, activations and communication buffers
- ``rss_between_steps_bytes``: the resident memory after the last step, freed heap returned to the
  system: what the process holds from one step to the next (the training state, the baseline)
- ``tokens_per_s``: tokens/s over both processes, steps after the first (warm-up) excluded

    python benchmarks/fsdp.py                             # gpt2 memory + gpt-nano throughput
    python benchmarks/fsdp.py --memory-model gpt2 --memory-steps 3 --speed-model gpt-nano --speed-steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _tensor_bytes(t) -> int:
    local = getattr(t, "_local_tensor", t)  # a DTensor: this process's shard
    return local.numel() * local.element_size()


def _reset_peak_rss() -> None:
    """Give freed heap pages back to the system and restart the peak-RSS count (Linux, glibc)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss() -> int:
    """VmRSS of this process, in bytes, after giving freed heap pages back to the system."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def _peak_rss() -> int:
    """VmHWM of this process, in bytes (the peak since the last reset)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def worker(args: argparse.Namespace) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import torch

    from genlab.core.registry import preset
    from genlab.models import build_model
    from genlab.objectives.causal_lm import causal_lm_loss
    from genlab.training.engine import Phase, TrainConfig, Trainer
    from genlab.training.optim import adamw
    from genlab.training.runtime import Runtime

    torch.manual_seed(0)
    rt = Runtime.from_env("cpu", "fp32", args.parallel)
    cfg = preset(args.model)
    model = rt.wrap(build_model(cfg))
    opt = adamw(model, 1e-4)
    B, T = args.batch_size, min(args.context, cfg.block_size)
    gen = torch.Generator().manual_seed(rt.rank)

    def batches():
        while True:
            x = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen)
            yield x[:, :-1], x[:, 1:]

    train = TrainConfig(max_steps=args.steps, batch_size=B, warmup_steps=0, eval_interval=0, log_interval=1,
                        progress=False, tensorboard=False, dtype="fp32")  # fmt: skip
    times = []

    def after_step(step: int) -> None:
        if step == 1:
            _reset_peak_rss()
        times.append(time.perf_counter())

    trainer = Trainer({"model": model}, {"model": opt}, [Phase(lambda ms, b: causal_lm_loss(ms["model"], b))], rt,
                      train, after_step=after_step)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(batches())
    times = [start, *times]
    steady = times[-1] - times[1] if len(times) > 2 else times[-1] - times[0]
    n_steady = max(len(times) - 2, 1)
    params = list(model.parameters())
    state = sum(_tensor_bytes(p) for p in params)
    state += sum(_tensor_bytes(p.grad) for p in params if p.grad is not None)
    state += sum(_tensor_bytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim())
    row = {
        "rank": rt.rank,
        "mode": rt.used,
        "state_bytes": state,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "steady_peak_rss_bytes": _peak_rss(),
        "rss_between_steps_bytes": _rss(),
        "rss_before_bytes": rss_before,
        "tokens_per_s": rt.world_size * B * T * n_steady / max(steady, 1e-9),
        "step_seconds": steady / n_steady,
    }
    with open(Path(args.out) / f"rank{rt.rank}.json", "w") as f:
        json.dump(row, f)
    rt.close()


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def launch(mode: str, model: str, steps: int, batch: int, context: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
               __file__, "--worker", "--parallel", mode, "--model", model, "--steps", str(steps),
               "--batch-size", str(batch), "--context", str(context), "--out", out]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        rows = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]
    return {
        "mode": rows[0]["mode"],
        "model": model,
        "batch_per_process": batch,
        "context": context,
        "steps": steps,
        "state_bytes_per_process": [r["state_bytes"] for r in rows],
        "peak_rss_bytes_per_process": [r["peak_rss_bytes"] for r in rows],
        "steady_peak_rss_bytes_per_process": [r["steady_peak_rss_bytes"] for r in rows],
        "rss_between_steps_bytes_per_process": [r["rss_between_steps_bytes"] for r in rows],
        "rss_before_model_bytes": [r["rss_before_bytes"] for r in rows],
        "tokens_per_s": rows[0]["tokens_per_s"],
        "step_seconds": rows[0]["step_seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--parallel", default="ddp", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="gpt2", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--context", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--memory-model", default="gpt2", help="preset for the memory comparison (default gpt2: 124M)")
    ap.add_argument("--memory-steps", type=int, default=3)
    ap.add_argument("--speed-model", default="gpt-nano", help="preset for the throughput comparison")
    ap.add_argument("--speed-steps", type=int, default=30)
    ap.add_argument("--speed-batch", type=int, default=12)
    ap.add_argument("--speed-context", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds, ddp and fsdp alternating")
    ap.add_argument("--threads", type=int, default=1, help="threads per process")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    memory = {m: launch(m, args.memory_model, args.memory_steps, 1, 128, args.threads) for m in ("ddp", "fsdp")}
    speed: dict[str, list[float]] = {"ddp": [], "fsdp": []}
    for _ in range(args.rounds):
        for m in ("ddp", "fsdp"):
            r = launch(m, args.speed_model, args.speed_steps, args.speed_batch, args.speed_context, args.threads)
            speed[m].append(r["tokens_per_s"])
    ddp_state, fsdp_state = (max(memory[m]["state_bytes_per_process"]) for m in ("ddp", "fsdp"))
    ddp_rss, fsdp_rss = (max(memory[m]["peak_rss_bytes_per_process"]) for m in ("ddp", "fsdp"))
    ddp_step, fsdp_step = (max(memory[m]["steady_peak_rss_bytes_per_process"]) for m in ("ddp", "fsdp"))
    ddp_held, fsdp_held = (max(memory[m]["rss_between_steps_bytes_per_process"]) for m in ("ddp", "fsdp"))
    best = {m: max(v) for m, v in speed.items()}
    print(json.dumps({
        "cpu": _lscpu_model(), "processes": 2, "threads_per_process": args.threads, "backend": "gloo",
        "data": "generated (random tokens)",
        "memory": memory,
        "state_fsdp_over_ddp": fsdp_state / ddp_state,
        "peak_rss_fsdp_over_ddp": fsdp_rss / ddp_rss,
        "steady_peak_rss_fsdp_over_ddp": fsdp_step / ddp_step,
        "rss_between_steps_fsdp_over_ddp": fsdp_held / ddp_held,
        "speed_model": args.speed_model, "speed_tokens_per_s": speed,
        "speed_fsdp_over_ddp": best["fsdp"] / best["ddp"],
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
