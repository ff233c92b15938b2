"""Image sets: the IDX file format and Fashion-MNIST.

IDX (LeCun's MNIST format) is a 4-byte magic number, the dimensions, then the raw
array in C order, all big-endian::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 .. 4+4d   d dimension sizes, unsigned 32-bit big-endian
    then        prod(dims) elements

Files may be gzip-compressed (as distributed). Parsed here with numpy, no torchvision.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genlab.core.errors import DataError
from genlab.data.batches import ShuffledBatches
from genlab.data.sources import resolve

#: IDX element-type codes and their big-endian numpy dtypes.
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

#: Fashion-MNIST label names, by label id.
FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}): check the path") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({exc}): fetch it again") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (plain or gzip) into an array of its native dtype and shape."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file (magic {data[:4].hex() or 'missing'}, expected 0000 + "
            "type code + ndim): give an idx file such as train-images-idx3-ubyte.gz"
        )
    dtype = np.dtype(IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its header ({len(data)} bytes): fetch it again")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape) * dtype.itemsize
    payload = len(data) - header
    if payload != expected:
        problem = "truncated" if payload < expected else "longer than its header says"
        raise DataError(
            f"{path} is {problem}: {payload} data bytes for shape {shape} of {dtype.name}, "
            f"expected {expected}: fetch it again"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    # Native byte order, writable, owning its memory.
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder} has no {stem}(.gz): install with: sudo apt-get install dataset-fashion-mnist")


def load_fashion_mnist(split: Literal["train", "test"] = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) as ``(images, labels)``.

    ``images`` is uint8 ``(N, 28, 28)`` with 0 = background, ``labels`` uint8 ``(N,)`` in
    0..9 (names in :data:`FASHION_CLASSES`); N is 60,000 for ``"train"`` and 10,000 for
    ``"test"``.
    """
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise DataError(f"unknown Fashion-MNIST split {split!r}: use 'train' or 'test'")
    folder = resolve("fashion-mnist")
    prefix = prefixes[split]
    images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{folder}: {split} images have shape {images.shape} {images.dtype}, "
            "expected (N, 28, 28) uint8: fetch the files again"
        )
    if labels.shape != (images.shape[0],) or labels.dtype != np.uint8:
        raise DataError(
            f"{folder}: {split} labels have shape {labels.shape}, "
            f"expected ({images.shape[0]},) uint8: fetch the files again"
        )
    if labels.size and int(labels.max()) >= len(FASHION_CLASSES):
        raise DataError(f"{folder}: {split} labels go up to {int(labels.max())}, expected 0..9: fetch the files again")
    return images, labels


def load_digits(split: Literal["train", "test"] = "train", test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images) as ``(images, labels)``.

    Intensities 0..16 are scaled to uint8 0..255 like Fashion-MNIST; the last
    ``test_fraction`` of the file is the test split (file order, no shuffling).
    """
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as e:
        raise DataError("the digits source needs scikit-learn: pip install scikit-learn") from e
    data = sk_digits()
    images = np.clip(data.images * 16, 0, 255).astype(np.uint8)  # (N, 8, 8)
    labels = data.target.astype(np.uint8)
    cut = int(round(len(images) * (1 - test_fraction)))
    return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])


IMAGE_SOURCES = {"fashion-mnist": load_fashion_mnist, "digits": load_digits}


def load_images(name: str, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """A named image source: uint8 ``(N, H, W)`` images and uint8 ``(N,)`` labels."""
    if name not in IMAGE_SOURCES:
        raise DataError(f"unknown image source '{name}'; choose from {sorted(IMAGE_SOURCES)}")
    return IMAGE_SOURCES[name](split)


def select(
    images: np.ndarray,
    labels: np.ndarray,
    exclude_class: int = -1,
    fraction: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A subset of a labelled split: without class ``exclude_class`` (-1 keeps all; anomaly
    detection trains on the other classes) and, for ``fraction`` < 1, a stratified sample of that
    fraction of each class (at least one image per class), drawn with ``seed``, in the original order.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"label fraction {fraction} must be in (0, 1]")
    classes = np.unique(labels)
    if exclude_class != -1 and exclude_class not in classes:
        raise DataError(f"exclude_class={exclude_class} is not one of the classes {classes.tolist()}")
    keep = labels != exclude_class
    if fraction < 1.0:
        rng = np.random.default_rng(seed)
        chosen = np.zeros(len(labels), dtype=bool)
        for c in classes[classes != exclude_class]:
            members = np.flatnonzero(labels == c)
            n = max(1, round(fraction * len(members)))
            chosen[rng.choice(members, size=n, replace=False)] = True
        keep &= chosen
    return images[keep], labels[keep]


class ImageBatches(ShuffledBatches):
    """Endless shuffled mini-batches ``(x, y)``: x float32 (B, 1, H, W) in [0, 1], y int64 (B,),
    augmented by :func:`augment` when ``shift`` or ``flip`` is set.

    The order is :class:`~genlab.data.batches.ShuffledBatches`'s: a fresh seeded permutation each
    epoch, exact resume from ``state_dict()``, and under data parallelism each rank takes its
    slice of every global batch, so N processes see what one process with the global batch sees.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shift: int = 0,
        flip: bool = False,
    ):
        if len(images) < batch_size * world_size:
            raise DataError(f"{len(images)} images cannot fill a global batch of {batch_size * world_size}")
        self.images = torch.from_numpy(np.ascontiguousarray(images))  # uint8 (N, H, W)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.shift, self.flip = shift, flip
        super().__init__(len(images), batch_size, self._collate, seed, rank, world_size)

    def _collate(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(index)
        return augment(to_float(self.images[index]), self.shift, self.flip), self.labels[index]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def augment(x: torch.Tensor, shift: int = 0, flip: bool = False, fill: float = 0.0) -> torch.Tensor:
    """Training augmentation of float images (B, C, S, S): each image translated by a random offset of
    up to ``shift`` pixels per axis (the border filled with ``fill``) and, with ``flip``, mirrored
    left-right with probability 1/2. The draws come from the global RNG, which a checkpoint restores."""
    if shift:
        B, S = x.size(0), x.size(-1)
        padded = F.pad(x, (shift, shift, shift, shift), value=fill)  # (B, C, S + 2s, S + 2s)
        offsets = torch.randint(0, 2 * shift + 1, (B, 2))  # (B, 2): top, left corner of each crop
        span = torch.arange(S)
        rows = (offsets[:, 0, None] + span)[:, None, :, None]  # (B, 1, S, 1)
        cols = (offsets[:, 1, None] + span)[:, None, None, :]  # (B, 1, 1, S)
        x = padded.gather(2, rows.expand(B, x.size(1), S, S + 2 * shift))  # (B, C, S, S + 2s)
        x = x.gather(3, cols.expand(B, x.size(1), S, S))  # (B, C, S, S)
    if flip:
        mirror = torch.rand(x.size(0)) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


def perturb(images: torch.Tensor, rate: float) -> torch.Tensor:
    """Replace each pixel of float images in [0, 1] with a uniform random intensity with probability
    ``rate`` (the global torch RNG): the training inputs of a background model, which learns the
    low-level statistics of the data but less of its semantics (Ren et al. 2019, arXiv:1906.02845)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"perturbation rate must be in [0, 1], got {rate}")
    if rate == 0.0:
        return images
    replace = torch.rand_like(images) < rate
    return torch.where(replace, torch.rand_like(images), images)
