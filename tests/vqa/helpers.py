"""A tiny easy-VQA folder written by the tests (the layout of the unpacked easy-vqa wheel)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
SHAPES = ("square", "bar")


def _draw(color: str, shape: str, size: int, rng) -> np.ndarray:
    im = np.full((size, size, 3), 255, np.uint8)
    x, y = rng.integers(0, size // 4, 2)
    w, h = (size // 2, size // 2) if shape == "square" else (size // 2, size // 6)
    im[y : y + h, x : x + w] = COLORS[color]
    return im


def write_images(folder: Path, n: int, size: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    rows = []
    (folder / "images").mkdir(parents=True)
    for i in range(n):
        color, shape = list(COLORS)[rng.integers(3)], SHAPES[rng.integers(2)]
        Image.fromarray(_draw(color, shape, size, rng)).save(folder / "images" / f"{i}.png")
        other = [c for c in COLORS if c != color][rng.integers(2)]
        asked = color if rng.random() < 0.5 else other
        rows += [["what color is the shape?", color, i], ["what shape is in the image?", shape, i],
                 [f"is there a {asked} shape?", "yes" if asked == color else "no", i]]  # fmt: skip
    (folder / "questions.json").write_text(json.dumps(rows))
    return rows


def make_easy_vqa(root: Path, n_train: int = 30, n_test: int = 10, size: int = 16) -> Path:
    """An unpacked easy-VQA folder: train/ and test/ with questions.json and images/<id>.png."""
    write_images(root / "train", n_train, size, seed=0)
    write_images(root / "test", n_test, size, seed=1)
    (root / "answers.txt").write_text("\n".join([*COLORS, *SHAPES, "yes", "no"]) + "\n")
    return root


def make_wheel(path: Path, n_train: int = 6, n_test: int = 3) -> Path:
    """A zip laid out like the easy-vqa wheel (easy_vqa/data/...), plus a file that is not data."""
    folder = make_easy_vqa(path.parent / "unzipped", n_train, n_test)
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f"easy_vqa/data/{f.relative_to(folder)}")
        z.writestr("easy_vqa/easy_vqa.py", "# code, not data\n")
        z.writestr("easy_vqa/data/.DS_Store", "junk")
    return path


TINY_MODEL = {"streams": "two", "n_embd": 16, "n_head": 2, "patch_size": 8, "n_text_layers": 1,
              "n_visual_layers": 1, "n_coattn_layers": 1, "dropout": 0.0, "attention_dropout": 0.0}  # fmt: skip
TINY_TRAIN = {"max_steps": 6, "batch_size": 8, "lr": 3e-3, "warmup_steps": 1, "eval_interval": 3,
              "log_interval": 1, "progress": False, "tensorboard": False, "dtype": "fp32"}  # fmt: skip


def tiny_recipe(root: Path, task: str = "vqa", **model) -> dict:
    return {"task": task, "model": {**TINY_MODEL, **model}, "data": {"source": "easy-vqa", "root": str(root),
            "val_fraction": 0.2}, "train": dict(TINY_TRAIN)}  # fmt: skip
