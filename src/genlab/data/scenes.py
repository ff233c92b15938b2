"""Fashion-MNIST scenes: real clothing images placed on a canvas, with templated captions and questions.

A scene is a 64 x 64 grayscale canvas cut into a 2 x 2 grid of 32-pixel cells; 2 to 4 cells
each hold one real 28 x 28 Fashion-MNIST item at a random offset of 0-4 pixels inside its cell
(0 = background, as in Fashion-MNIST). The item classes are drawn uniformly (repeats allowed,
so counting questions have answers other than 1). Everything said about a scene is
*generated* from its layout, and is labelled so wherever it is reported:

- a caption: two items by their relation ("a sneaker to the left of a bag", "a coat above a
  dress", "a shirt above and to the right of a sandal"), three or four by position in reading
  order ("a bag at the top left, a coat at the top right and a dress at the bottom right");
- questions with one-word or two-word answers, each with a type: ``what`` ("what is at the top
  left?" -> "sneaker", or "nothing" for an empty cell), ``where`` ("where is the bag?", asked
  of a class present once), ``count`` ("how many items are there?", "how many shoes are
  there?": sandals, sneakers and ankle boots), ``yes/no`` ("is there a dress?", balanced).

Splits never share a Fashion-MNIST image: ``train`` draws from the first 50,000 images of
Fashion-MNIST's train split, ``val`` from its last 10,000, ``test`` from its test split.
``make_scenes(split, n, seed)`` is deterministic, and a smaller ``n`` gives a prefix of a larger one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genlab.core.errors import DataError
from genlab.data.images import load_fashion_mnist

CANVAS = 64
CELL = 32
ITEM = 28
#: Cell names by position index: row-major over the 2 x 2 grid.
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
#: Lower-case item names by Fashion-MNIST label.
ITEM_NAMES = (
    "t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
#: The labels that count as shoes in "how many shoes are there?".
SHOES = (5, 7, 9)
QUESTION_TYPES = ("what", "where", "count", "yes/no")
SPLITS = ("train", "val", "test")
_TRAIN_CUT = 50_000


@dataclass(frozen=True)
class Scene:
    """One generated scene."""

    image: np.ndarray  # uint8 (64, 64) grayscale, 0 = background
    items: tuple[tuple[int, int], ...]  # (Fashion-MNIST label, position index), in reading order
    caption: str
    questions: tuple[tuple[str, str, str], ...]  # (question, answer, type)


def noun_phrase(label: int) -> str:
    """ "a sneaker", "an ankle boot", "a pair of trousers"."""
    name = ITEM_NAMES[label]
    if name == "trousers":
        return "a pair of trousers"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def caption_of(items: tuple[tuple[int, int], ...]) -> str:
    """The templated caption of a layout (items in reading order)."""
    if len(items) == 2:
        (a, pa), (b, pb) = items
        ra, ca, rb, cb = pa // 2, pa % 2, pb // 2, pb % 2
        if ra == rb:
            relation = "to the left of"
        elif ca == cb:
            relation = "above"
        else:
            relation = "above and to the left of" if ca < cb else "above and to the right of"
        return f"{noun_phrase(a)} {relation} {noun_phrase(b)}"
    parts = [f"{noun_phrase(label)} at the {POSITIONS[pos]}" for label, pos in items]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def questions_of(items: tuple[tuple[int, int], ...], rng: np.random.Generator) -> tuple[tuple[str, str, str], ...]:
    """The scene's questions: one or two ``what``, one ``where`` (when a class is there once), two
    ``count`` and one ``yes/no``."""
    at = {pos: label for label, pos in items}
    labels = [label for label, _ in items]
    out = []
    pos = int(rng.choice(sorted(at)))
    out.append((f"what is at the {POSITIONS[pos]}?", ITEM_NAMES[at[pos]], "what"))
    empty = [p for p in range(4) if p not in at]
    if empty and rng.random() < 0.5:
        out.append((f"what is at the {POSITIONS[int(rng.choice(empty))]}?", "nothing", "what"))
    once = [label for label in sorted(set(labels)) if labels.count(label) == 1]
    if once:
        label = int(rng.choice(once))
        where = next(p for lab, p in items if lab == label)
        out.append((f"where is the {ITEM_NAMES[label]}?", POSITIONS[where], "where"))
    out.append(("how many items are there?", str(len(items)), "count"))
    out.append(("how many shoes are there?", str(sum(label in SHOES for label in labels)), "count"))
    present = sorted(set(labels))
    absent = [label for label in range(len(ITEM_NAMES)) if label not in present]
    if rng.random() < 0.5:
        out.append((f"is there {noun_phrase(int(rng.choice(present)))}?", "yes", "yes/no"))
    else:
        out.append((f"is there {noun_phrase(int(rng.choice(absent)))}?", "no", "yes/no"))
    return tuple(out)


def _pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "test":
        return load_fashion_mnist("test")
    images, labels = load_fashion_mnist("train")
    cut = slice(0, _TRAIN_CUT) if split == "train" else slice(_TRAIN_CUT, None)
    return images[cut], labels[cut]


def make_scenes(split: str, n: int, seed: int = 0, min_items: int = 2, max_items: int = 4) -> list[Scene]:
    """``n`` scenes of one split (``train``, ``val``, ``test``), deterministic in (split, seed)."""
    if split not in SPLITS:
        raise DataError(f"unknown scene split {split!r}: use one of {', '.join(SPLITS)}")
    if n < 1:
        raise DataError(f"the number of scenes must be at least 1, got {n}")
    if not 1 <= min_items <= max_items <= 4:
        raise DataError(f"items per scene must satisfy 1 <= min_items <= max_items <= 4, got {min_items}, {max_items}")
    images, labels = _pool(split)
    by_label = [np.flatnonzero(labels == c) for c in range(len(ITEM_NAMES))]
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    scenes = []
    for _ in range(n):
        k = int(rng.integers(min_items, max_items + 1))
        cells = sorted(int(p) for p in rng.choice(4, size=k, replace=False))
        canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
        items = []
        for pos in cells:
            label = int(rng.integers(len(ITEM_NAMES)))
            image = images[by_label[label][int(rng.integers(len(by_label[label])))]]
            dy, dx = (int(v) for v in rng.integers(0, CELL - ITEM + 1, size=2))
            y, x = (pos // 2) * CELL + dy, (pos % 2) * CELL + dx
            canvas[y : y + ITEM, x : x + ITEM] = image
            items.append((label, pos))
        items = tuple(items)
        scenes.append(Scene(canvas, items, caption_of(items), questions_of(items, rng)))
    return scenes
