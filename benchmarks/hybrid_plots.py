"""Draw docs/forecast-<series>.png (forecast vs truth with its 90% interval) and docs/vit-attention.png
(ViT attention maps on test images) from trained runs, with PIL only. Prints one JSON object.

    python benchmarks/hybrid_plots.py --forecast-run runs/forecast-co2 --vit-run runs/vit-fashion
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from genlab.data.images import load_images, to_float
from genlab.data.series import load_series, split_series
from genlab.runs import load_run, read_run_config

W, H, M = 900, 360, 50  # canvas and margin


def _xy(t, v, t0, t1, lo, hi):
    x = M + (t - t0) / max(t1 - t0, 1) * (W - 2 * M)
    y = H - M - (v - lo) / max(hi - lo, 1e-9) * (H - 2 * M)
    return float(x), float(y)


def forecast_plot(run: Path, out: Path) -> dict:
    model = load_run(run).model
    d = read_run_config(run)["data"]
    cfg = model.config
    values, labels = load_series(d["series"])
    split = split_series(values, cfg.window, cfg.horizon, d["val_fraction"], d["test_fraction"], d["series"])
    starts = list(range(split.val_end, len(values) - cfg.horizon + 1, cfg.horizon))  # non-overlapping forecasts
    x = torch.from_numpy(np.stack([split.scaled[t - cfg.window : t] for t in starts]))
    p = {k: split.unscale(v.numpy().astype(np.float64)) for k, v in model.predict(x).items()}
    t0, t1 = max(0, split.val_end - 3 * cfg.window), len(values) - 1
    shown = values[t0:]
    lo, hi = min(shown.min(), p["lower"].min()), max(shown.max(), p["upper"].max())
    img = Image.new("RGB", (W, H), "white")
    g = ImageDraw.Draw(img)
    g.rectangle([M, M, W - M, H - M], outline=(160, 160, 160))
    for i, t in enumerate(starts):  # the 90% interval, then the mean forecast
        ts = np.arange(t, t + cfg.horizon)
        band = [_xy(a, b, t0, t1, lo, hi) for a, b in zip(ts, p["upper"][i])]
        band += [_xy(a, b, t0, t1, lo, hi) for a, b in zip(ts[::-1], p["lower"][i][::-1])]
        g.polygon(band, fill=(190, 210, 250))
    for i, t in enumerate(starts):
        ts = np.arange(t, t + cfg.horizon)
        g.line([_xy(a, b, t0, t1, lo, hi) for a, b in zip(ts, p["mean"][i])], fill=(30, 80, 220), width=2)
    g.line([_xy(t0 + i, v, t0, t1, lo, hi) for i, v in enumerate(shown)], fill=(0, 0, 0), width=1)
    xv = _xy(split.val_end, lo, t0, t1, lo, hi)[0]
    g.line([(xv, M), (xv, H - M)], fill=(200, 60, 60))
    title = (f"{d['series']} (real, statsmodels): truth (black), {cfg.arch} forecast (blue) with its 90% interval, "
             f"{cfg.horizon} steps from each origin; red line: test span starts")  # fmt: skip
    g.text((M, 12), title, fill=(0, 0, 0))
    g.text((M, H - M + 8), labels[t0], fill=(0, 0, 0))
    g.text((W - M - 50, H - M + 8), labels[t1], fill=(0, 0, 0))
    g.text((4, M), f"{hi:.1f}", fill=(0, 0, 0))
    g.text((4, H - M - 10), f"{lo:.1f}", fill=(0, 0, 0))
    img.save(out)
    return {"forecast_png": str(out), "series": d["series"], "forecasts": len(starts)}


def attention_plot(run: Path, out: Path, n_images: int = 4) -> dict:
    """Rows: test images. Columns: the image, then per layer the attention each patch receives
    (mean over heads and queries), upsampled to the image and laid over it in red."""
    model = load_run(run).model
    images, labels = load_images(read_run_config(run)["data"].get("source", "fashion-mnist"), "test")
    x = to_float(torch.from_numpy(images[:n_images]))
    with torch.no_grad():
        o = model(x, attentions=True)
    cfg, scale = model.config, 4
    side = cfg.image_size * scale
    canvas = Image.new("RGB", ((cfg.n_layer + 1) * (side + 4) + 4, n_images * (side + 4) + 24), "white")
    ImageDraw.Draw(canvas).text((4, 4), "image | attention received per layer 1..L (mean over heads)", fill=(0, 0, 0))
    n_prefix = int(cfg.pool == "cls")
    for r in range(n_images):
        base = (x[r, 0].numpy() * 255).astype(np.uint8)
        gray = Image.fromarray(base).resize((side, side), Image.NEAREST).convert("RGB")
        canvas.paste(gray, (4, 24 + r * (side + 4)))
        for layer, a in enumerate(o.attentions):
            recv = a[r].mean(0).mean(0)[n_prefix:].reshape(o.grid, o.grid).numpy()  # (G, G)
            recv = (recv - recv.min()) / max(float(recv.max() - recv.min()), 1e-9)
            heat = Image.fromarray((recv * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
            red = Image.merge("RGB", (heat, Image.new("L", (side, side), 0), Image.new("L", (side, side), 0)))
            canvas.paste(Image.blend(gray, red, 0.55), (4 + (layer + 1) * (side + 4), 24 + r * (side + 4)))
    canvas.save(out)
    return {"attention_png": str(out), "images": n_images, "labels": labels[:n_images].tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--forecast-run", type=Path, action="append", default=[])
    ap.add_argument("--vit-run", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"forecast": []}
    for run in a.forecast_run:
        series = read_run_config(run)["data"]["series"]
        result["forecast"].append(forecast_plot(run, a.out / f"forecast-{series}.png"))
    if a.vit_run:
        result["attention"] = attention_plot(a.vit_run, a.out / "vit-attention.png")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
