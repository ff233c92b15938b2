"""Clustering benchmark: k-means and a Gaussian mixture (k = 10) on four feature spaces of the
Fashion-MNIST test set (10,000 images, real data), scored by NMI and ARI against the labels:

* the latent means mu(x) of a VAE run (``genlab train vae/fashion``),
* the penultimate features of a CNN classifier run (``genlab train cnn/fashion``),
* the raw pixels (784 dims in [0, 1]),
* the top 50 principal components of the pixels (fitted on the same test images; no labels used).

The VAE never sees a label; the CNN was trained on the labels of the training images, so its
features are an upper reference, not an unsupervised result. Prints one JSON object (with
``--markdown FILE``, also the table as markdown). Single-threaded by default (OMP_NUM_THREADS=1).

    python benchmarks/clustering.py --vae runs/vae-fashion --cnn runs/cnn-fashion [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from genlab.eval.clustering import cluster, cluster_scores
from genlab.recipes.unsupervised import load_features


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def run_info(run_dir: Path) -> dict:
    from genlab.runs import read_run_config

    cfg = read_run_config(run_dir)
    info = {"run": str(run_dir), "recipe_steps": cfg["train"]["max_steps"], "preset": cfg["model"].get("preset")}
    results = run_dir / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        for key in ("test_accuracy", "test_loss", "test_nelbo", "val_loss"):
            if key in r:
                info[key] = r[key]
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", type=Path, required=True, help="a vae/fashion run directory")
    ap.add_argument("--cnn", type=Path, required=True, help="a cnn/fashion run directory")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0], help="clustering seeds (the mean is reported)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N test images (0: all 10,000)")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args()

    spaces = {
        "VAE latent means": str(args.vae),
        "CNN penultimate features": str(args.cnn),
        "raw pixels": "fashion-mnist-pixels",
        "PCA-50 of the pixels": "fashion-mnist-pca50",
    }
    rows = []
    for name, spec in spaces.items():
        t = time.perf_counter()
        feats = load_features(spec, limit=args.limit)
        load_s = time.perf_counter() - t
        for method in ("kmeans", "gmm"):
            scores, seconds = [], []
            for seed in args.seeds:
                t = time.perf_counter()
                pred = cluster(feats.x, method, args.k, seed)
                seconds.append(time.perf_counter() - t)
                scores.append(cluster_scores(pred, feats.labels))
            rows.append(
                {
                    "features": name,
                    "dim": int(feats.x.shape[1]),
                    "method": method,
                    "nmi": float(np.mean([s["nmi"] for s in scores])),
                    "ari": float(np.mean([s["ari"] for s in scores])),
                    "nmi_per_seed": [round(s["nmi"], 4) for s in scores],
                    "fit_seconds": round(float(np.mean(seconds)), 2),
                    "features_seconds": round(load_s, 2),
                    "source": feats.source,
                }
            )
    out = {
        "benchmark": "clustering",
        "data": "Fashion-MNIST test set (Debian dataset-fashion-mnist), real",
        "points": int(feats.x.shape[0]),
        "k": args.k,
        "seeds": args.seeds,
        "cpu": cpu_model(),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "vae": run_info(args.vae),
        "cnn": run_info(args.cnn),
        "rows": rows,
    }
    print(json.dumps(out))
    if args.markdown:
        lines = [
            f"| features (Fashion-MNIST test, {out['points']:,} images, real) | dims | k-means NMI | k-means ARI "
            "| GMM NMI | GMM ARI |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in spaces:
            km = next(r for r in rows if r["features"] == name and r["method"] == "kmeans")
            gm = next(r for r in rows if r["features"] == name and r["method"] == "gmm")
            lines.append(
                f"| {name} | {km['dim']} | {km['nmi']:.3f} | {km['ari']:.3f} | {gm['nmi']:.3f} | {gm['ari']:.3f} |"
            )
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
