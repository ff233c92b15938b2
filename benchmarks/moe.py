"""The MoE layer: genlab's sorted fast path (each grouped-linear kernel) vs the reference loop vs
transformers' MixtralSparseMoeBlock with the same weights, forward + backward, on CPU.

Prints one JSON object: per shape, the median milliseconds of each implementation over the
reps (run round-robin, so a busy machine slows them alike), the ratios, and the largest
difference between genlab's and transformers' outputs (they compute the same function).

    PYTHONPATH=src python benchmarks/moe.py                 # threads 2, 7 reps
    PYTHONPATH=src python benchmarks/moe.py --reps 3 --tokens 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

from genlab.layers.moe import GROUPED_LINEAR, MoE, MoEConfig


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def hf_block(layer: MoE, implementation: str):
    """transformers' MixtralSparseMoeBlock holding ``layer``'s weights, with experts_implementation set."""
    import transformers
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    E, C, H = layer.experts.num_experts, layer.experts.fc.weight.size(1), layer.experts.hidden
    cfg = transformers.MixtralConfig(hidden_size=C, intermediate_size=H, num_local_experts=E,
                                     num_experts_per_tok=layer.router.top_k)  # fmt: skip
    cfg._experts_implementation = implementation
    block = MixtralSparseMoeBlock(cfg)
    with torch.no_grad():
        block.gate.weight.copy_(layer.router.weight)
        block.experts.gate_up_proj.copy_(layer.experts.fc.weight.transpose(1, 2))  # (E, 2H, C)
        block.experts.down_proj.copy_(layer.experts.proj.weight.transpose(1, 2))  # (E, C, H)
    return block


def step(module, x: torch.Tensor, grad: torch.Tensor) -> float:
    """One forward + backward; seconds."""
    for p in module.parameters():
        p.grad = None
    x = x.detach().requires_grad_()
    t = time.perf_counter()
    y = module(x)
    y.backward(grad)
    return time.perf_counter() - t


class Kernel(torch.nn.Module):
    """The genlab layer with a chosen kernel (same parameters)."""

    def __init__(self, layer: MoE, kernel: str):
        super().__init__()
        self.layer, self.kernel = layer, kernel

    def forward(self, x):
        self.layer.cfg.kernel = self.kernel
        return self.layer(x)


def bench_shape(name: str, tokens: int, dim: int, hidden: int, experts: int, top_k: int, reps: int) -> dict:
    torch.manual_seed(0)
    layer = MoE(dim, hidden, MoEConfig(num_experts=experts, top_k=top_k, expert_hidden=hidden, aux_loss_coef=0.0))
    layer.train()
    x = torch.randn(1, tokens, dim)  # MixtralSparseMoeBlock wants (B, T, C)
    grad = torch.randn(1, tokens, dim)
    impls: dict[str, torch.nn.Module] = {"reference": Kernel(layer, "reference")}
    for k in ("auto", *GROUPED_LINEAR):
        impls[f"genlab-{k}"] = Kernel(layer, k)
    # transformers' "batched_mm" gathers each slot's weights, (N K, C, 2H): 1 GB here, minutes on CPU; left out.
    hf_impls = ["eager", "grouped_mm"]
    hf_diff = {}
    for impl in hf_impls:
        try:
            block = hf_block(layer, impl)
            with torch.no_grad():
                layer.cfg.kernel = "auto"
                hf_diff[impl] = (block(x.clone()) - layer(x)).abs().max().item()
            impls[f"transformers-{impl}"] = block
        except Exception as e:  # an implementation this torch / CPU cannot dispatch
            hf_diff[impl] = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(2):  # warm-up
        for m in impls.values():
            step(m, x, grad)
    for _ in range(reps):
        for k, m in impls.items():
            times[k].append(step(m, x, grad))
    ms = {k: round(1e3 * statistics.median(v), 2) for k, v in times.items()}
    fast = ms["genlab-auto"]
    hf = {k: v for k, v in ms.items() if k.startswith("transformers-")}
    return {
        "shape": {
            "name": name,
            "tokens": tokens,
            "dim": dim,
            "expert_hidden": hidden,
            "experts": experts,
            "top_k": top_k,
            "expert": "swiglu",
        },  # fmt: skip
        "median_ms_forward_backward": ms,
        "speedup_vs_reference": round(ms["reference"] / fast, 2),
        "speedup_vs_transformers": {k.removeprefix("transformers-"): round(v / fast, 2) for k, v in hf.items()},
        "speedup_vs_fastest_transformers": round(min(hf.values()) / fast, 2) if hf else None,
        "fastest_genlab_kernel": min((k for k in ms if k.startswith("genlab-") and k != "genlab-auto"), key=ms.get),
        "max_abs_diff_vs_transformers": hf_diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [
        ("gpt-moe-bpe: 8 experts of 512, top-2", args.tokens, 256, 512, 8, 2),
        ("fine-grained: 32 experts of 128, top-8", args.tokens, 256, 128, 32, 8),
        ("wide: 8 experts of 1024, top-2", args.tokens, 512, 1024, 8, 2),
    ]
    out = {
        "benchmark": "moe-layer",
        "cpu": cpu_name(),
        "threads": args.threads,
        "reps": args.reps,
        "torch": torch.__version__,
        "dtype": "float32",
        "results": [bench_shape(*s, reps=args.reps) for s in shapes],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
