"""Long-context attention: forward+backward time and peak memory of dense and efficient attention.

One self-attention layer (4 heads x 64, C = 256, bidirectional, batch 1) at each length T:
eager (the dense reference), SDPA (PyTorch's fused kernel), Longformer (w = 256, 512),
Linformer (k = 256) and LSH (4 rounds, chunks of 64, T / 64 buckets). Every point runs in its
own subprocess, which reports its peak RSS (resource.getrusage) and the median of a few timed
forward+backward passes after one warm-up; points whose dense (T, T) tensors would pass
--max-gb are skipped, not run. Prints one JSON object (times, memory, each kind's time ratio to
SDPA at the same T, and the crossover: the shortest measured T from which a kind is faster than
SDPA) and draws both curves into docs/long_attention.png (PIL).

    python benchmarks/long_attention.py [--lengths 1024 2048 4096 8192 16384] [--reps 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

C, H = 256, 4
KINDS = {
    "eager": {},
    "sdpa": {},
    "longformer-256": {"window": 256},
    "longformer-512": {"window": 512},
    "linformer-256": {"k": 256},
    "lsh-4": {"rounds": 4, "chunk": 64},
}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def estimate_gb(kind: str, T: int) -> float:
    """Rough peak of the (T, T)-sized tensors: scores, weights and their gradients in fp32."""
    if kind == "eager":
        return 5 * H * T * T * 4 / 1e9
    return 0.0  # SDPA and the efficient kinds hold O(T) or O(T w) memory


def build(kind: str, T: int) -> torch.nn.Module:
    from genlab.layers.attention import MultiHeadAttention
    from genlab.layers.efficient.linformer import LinformerAttention
    from genlab.layers.efficient.lsh import LSHAttention
    from genlab.layers.efficient.sliding_window import LongformerAttention

    opts = KINDS[kind]
    if kind in ("eager", "sdpa"):
        return MultiHeadAttention(C, H, backend=kind, causal=False)
    if kind.startswith("longformer"):
        return LongformerAttention(C, H, opts["window"], causal=False)
    if kind.startswith("linformer"):
        return LinformerAttention(C, H, seq_len=T, k=opts["k"])
    buckets = max(2, T // opts["chunk"])
    buckets += buckets % 2
    return LSHAttention(C, H, n_buckets=buckets, n_rounds=opts["rounds"], chunk=opts["chunk"], seed=0)


def point(kind: str, T: int, reps: int, threads: int) -> dict:
    """Run in a subprocess: time reps forward+backward passes, report peak RSS."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB after imports
    model = build(kind, T)
    x = torch.randn(1, T, C, requires_grad=True)
    times = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        model(x).square().mean().backward()
        if i:  # the first pass is a warm-up
            times.append(time.perf_counter() - t0)
        x.grad = None
        model.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"time_s": statistics.median(times), "peak_rss_mb": round(peak, 1), "above_start_mb": round(peak - base, 1)}


def plot(results: dict, lengths: list[int], path: Path, title: str) -> None:
    """Two log-log panels (time, peak memory above start) drawn with PIL."""
    import math

    from PIL import Image, ImageDraw

    colours = ["#444444", "#d62728", "#1f77b4", "#17becf", "#2ca02c", "#9467bd"]
    W, Hh, pad = 560, 420, 60
    img = Image.new("RGB", (2 * W, Hh + 40), "white")  # panels, x ticks, then the axis labels
    d = ImageDraw.Draw(img)
    d.text((10, 5), title, fill="black")
    for panel, (metric, label) in enumerate(
        (("time_s", "fwd+bwd time (s)"), ("above_start_mb", "peak RSS above start (MB)"))
    ):
        ox = panel * W
        vals = [r[metric] for k in results for r in results[k].values() if r and r.get(metric, 0) > 0]
        lo, hi = math.log10(min(vals)), math.log10(max(vals))
        hi = hi if hi > lo else lo + 1
        xlo, xhi = math.log2(lengths[0]), math.log2(lengths[-1])

        def xy(T, v, ox=ox, lo=lo, hi=hi, xlo=xlo, xhi=xhi):
            x = ox + pad + (math.log2(T) - xlo) / max(xhi - xlo, 1) * (W - 2 * pad)
            y = 30 + (Hh - pad) - (math.log10(v) - lo) / (hi - lo) * (Hh - pad - 30)
            return x, y

        d.rectangle([ox + pad, 30, ox + W - pad, Hh - pad + 30], outline="black")
        d.text((ox + pad, Hh + 18), f"T (log2)   {label} (log10: {10**lo:.3g} .. {10**hi:.3g})", fill="black")
        for T in lengths:
            x, _ = xy(T, 10**lo)
            d.text((x - 12, Hh - pad + 34), f"{T // 1024}k", fill="black")
        for i, (kind, rows) in enumerate(results.items()):
            pts = [xy(T, rows[str(T)][metric]) for T in lengths if rows.get(str(T)) and rows[str(T)][metric] > 0]
            if len(pts) > 1:
                d.line(pts, fill=colours[i % len(colours)], width=2)
            for x, y in pts:
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colours[i % len(colours)])
            d.text((ox + pad + 8, 36 + 14 * i), kind, fill=colours[i % len(colours)])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="*", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--kinds", nargs="*", default=list(KINDS))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-gb", type=float, default=8.0, help="skip points whose (T, T) tensors would pass this")
    ap.add_argument("--png", type=Path, default=Path("docs/long_attention.png"))
    ap.add_argument("--replot", type=Path, help="redraw the PNG from this script's JSON output and exit")
    ap.add_argument("--point", nargs=2, metavar=("KIND", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        lengths = sorted({int(T) for rows in saved["results"].values() for T in rows})
        title = f"one attention layer, 4 heads x 64, batch 1, fwd+bwd, {saved['threads']} thread(s), {saved['cpu']}"
        plot(saved["results"], lengths, args.png, title)
        return
    if args.point:
        print(json.dumps(point(args.point[0], int(args.point[1]), args.reps, args.threads)))
        return
    results: dict[str, dict[str, dict | None]] = {k: {} for k in args.kinds}
    skipped = []
    for T in args.lengths:
        for kind in args.kinds:
            if estimate_gb(kind, T) > args.max_gb:
                skipped.append(f"{kind}@{T} (~{estimate_gb(kind, T):.0f} GB)")
                results[kind][str(T)] = None
                continue
            cmd = [sys.executable, __file__, "--point", kind, str(T), "--reps", str(args.reps)]
            cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode:
                skipped.append(f"{kind}@{T} (failed: {out.stderr.strip().splitlines()[-1:]})")
                results[kind][str(T)] = None
                continue
            results[kind][str(T)] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{kind:>15} T={T:>6}: {results[kind][str(T)]}", file=sys.stderr)
    ratios, crossover = {}, {}
    for kind in args.kinds:
        ratios[kind] = {}
        for T in args.lengths:
            mine, ref = results[kind].get(str(T)), results.get("sdpa", {}).get(str(T))
            if mine and ref:
                ratios[kind][str(T)] = round(ref["time_s"] / mine["time_s"], 3)  # > 1: faster than SDPA
        faster = [int(T) for T, r in ratios[kind].items() if r > 1.0]
        measured = [int(T) for T in ratios[kind]]
        cross = None
        for T in measured:
            if all(ratios[kind][str(u)] > 1.0 for u in measured if u >= T):
                cross = T
                break
        crossover[kind] = cross if faster else None
    cpu = cpu_name()
    title = f"one attention layer, 4 heads x 64, batch 1, fwd+bwd, {args.threads} thread(s), {cpu}"
    plot({k: v for k, v in results.items()}, args.lengths, args.png, title)
    print(
        json.dumps(
            {
                "cpu": cpu,
                "threads": args.threads,
                "torch": torch.__version__,
                "layer": {"n_embd": C, "n_head": H, "head_dim": C // H, "batch": 1, "direction": "bidirectional"},
                "reps": args.reps,
                "results": results,
                "speedup_vs_sdpa": ratios,
                "crossover_T_vs_sdpa": crossover,
                "skipped": skipped,
                "png": str(args.png),
            }
        )
    )


if __name__ == "__main__":
    main()
