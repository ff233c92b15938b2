"""Captioned drawings: Tux Paint's stamps (real, human-written captions in English and French).

Debian's ``tuxpaint-stamps-default`` installs about 950 stamps under
``/usr/share/tuxpaint/stamps/<category>/.../<name>.{png,svg}``, each with ``<name>.txt``::

    A frog.                     <- line 1: the English caption
    de.utf8=Ein Frosch.         <- then one ``<locale>.utf8=<caption>`` line per language
    fr.utf8=Une grenouille.

The drawings with a PNG (about 785; the SVG-only ones are skipped: rendering SVG needs a
library genlab does not depend on) are composited over white, cropped to their opaque
pixels, padded to a square and resized to ``size`` x ``size`` RGB. The split is by a hash of
the stamp's folder and base name without a trailing number (``frog-1`` goes with ``frog``),
about 80 / 10 / 10, so a stamp's variants never straddle train and test. The decoded set is
cached as ``data_dir()/tuxpaint/tuxpaint-<size>.npz``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.core.errors import DataError
from genlab.core.paths import data_dir

#: Where Debian's tuxpaint-stamps-default puts the stamps (GENLAB_TUXPAINT overrides it).
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
TUXPAINT_HINT = "install with: sudo apt-get install tuxpaint-stamps-default (or set GENLAB_TUXPAINT to a stamps folder)"
#: Split fractions (validation, test); the rest is training.
SPLIT_FRACTIONS = (0.1, 0.1)
SPLITS = ("train", "val", "test")
# A trailing variant number: frog-1, fireman240a, dinosaur_2.
_VARIANT = re.compile(r"[-_ ]?\d+[a-z]?$")
# A cache built by another version of this module is rebuilt.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Captioned:
    """One drawing and its captions."""

    image: np.ndarray  # uint8 (H, W, 3) RGB on white
    caption: str  # English
    caption_fr: str | None
    name: str  # path relative to the stamps folder, without the suffix
    category: str  # the top folder, e.g. "animals"


def tuxpaint_dir() -> Path:
    return Path(os.environ.get("GENLAB_TUXPAINT", TUXPAINT_DIR))


def tuxpaint_system() -> Path | None:
    """The stamps folder when it holds captioned PNG stamps, else None."""
    folder = tuxpaint_dir()
    return folder if folder.is_dir() and next(folder.rglob("*.txt"), None) is not None else None


def parse_caption_file(text: str) -> tuple[str, str | None]:
    """(English caption, French caption or None) of a stamp's ``.txt`` file."""
    lines = [line.strip() for line in text.splitlines()]
    english = lines[0] if lines else ""
    french = next((line.split("=", 1)[1].strip() for line in lines[1:] if line.startswith("fr.utf8=")), None)
    return english, french or None


def split_of(name: str) -> str:
    """``train`` / ``val`` / ``test`` for a stamp by a hash of its group (folder + base name)."""
    folder, _, stem = name.rpartition("/")
    base = _VARIANT.sub("", stem) or stem
    group = f"{folder}/{base}"
    u = int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big") / 2**64
    val, test = SPLIT_FRACTIONS
    return "test" if u < test else "val" if u < test + val else "train"


def render(path: Path, size: int) -> np.ndarray:
    """A stamp PNG as uint8 (size, size, 3): over white, cropped to its opaque part, centred square."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGBA")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read the drawing {path} ({exc}): reinstall tuxpaint-stamps-default") from exc
    box = im.getchannel("A").getbbox() or (0, 0, *im.size)
    im = im.crop(box)
    side = max(im.size)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def _build(folder: Path, size: int, cache: Path) -> None:
    names, captions, french, images = [], [], [], []
    for txt in sorted(folder.rglob("*.txt")):
        png = txt.with_suffix(".png")
        if not png.is_file():
            continue
        english, fr = parse_caption_file(txt.read_text(encoding="utf-8", errors="replace"))
        if not english:
            continue
        names.append(txt.relative_to(folder).with_suffix("").as_posix())
        captions.append(english)
        french.append(fr or "")
        images.append(render(png, size))
    if not images:
        raise DataError(f"{folder} has no captioned PNG stamps: {TUXPAINT_HINT}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    meta = {"version": _CACHE_VERSION, "folder": str(folder), "names": names, "captions": captions, "fr": french}
    tmp = cache.with_name(f"{cache.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, images=np.stack(images), meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    os.replace(tmp, cache)


def load_tuxpaint(split: str = "train", size: int = 64) -> list[Captioned]:
    """Tux Paint's captioned drawings of one split (``train``, ``val``, ``test`` or ``all``), in name order."""
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown Tux Paint split {split!r}: use one of {', '.join(SPLITS)} or all")
    if not 8 <= size <= 512:
        raise DataError(f"Tux Paint image size {size} must be between 8 and 512 pixels")
    cache = data_dir() / "tuxpaint" / f"tuxpaint-{size}.npz"
    folder = tuxpaint_system()
    meta = None
    if cache.is_file():
        with np.load(cache) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("version") != _CACHE_VERSION or (folder is not None and meta.get("folder") != str(folder)):
                meta = None
    if meta is None:
        if folder is None:
            raise DataError(f"data source 'tuxpaint' is not available here: {TUXPAINT_HINT}")
        _build(folder, size, cache)
    with np.load(cache) as z:
        images = z["images"]
        meta = json.loads(z["meta"].tobytes())
    out = []
    for i, name in enumerate(meta["names"]):
        if split != "all" and split_of(name) != split:
            continue
        out.append(Captioned(images[i], meta["captions"][i], meta["fr"][i] or None, name, name.split("/", 1)[0]))
    return out
