"""Image grids as PNG files (Pillow)."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None, pad: int = 2) -> Path:
    """images (N, C, H, W) in [0, 1] -> one PNG of nrow images per row, 1-pixel-per-value, grey padding."""
    from PIL import Image

    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.5)
    for i, img in enumerate(images.detach().float().clamp(0, 1).cpu()):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top : top + h, left : left + w] = img
    pixels = (canvas * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if c == 1 else pixels.permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
