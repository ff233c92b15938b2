"""What the Images and CNN pages compute: decoded latents, interpolations, GAN grids,
reconstructions, anomaly scores per class, and the feature maps of every CNN stage.

Axes: B images, C channels, H height, W width, L latent dimensions.

Images are uint8 numpy arrays (H, W) or (H, W, 3) ready for the browser; the models work on
float tensors (B, C, H, W) in [0, 1]. The test split is the one the run was trained beside
(``data.source``: digits or fashion-mnist, see :func:`genlab.data.images.load_images`).
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch
import torch.nn as nn

from genlab.core.errors import ConfigError, DataError
from genlab.data.images import load_images
from genlab.objectives.elbo import negative_elbo

IMAGE_FAMILIES = ("vae", "gan")
MAX_UPLOAD_PIXELS = 4096 * 4096


@functools.lru_cache(maxsize=4)
def test_images(source: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W) test images and (N,) labels of a named image source, read once."""
    return load_images(source, "test")


def run_source(config: dict) -> str:
    source = (config.get("data") or {}).get("source")
    if not isinstance(source, str):
        raise ConfigError("this run's config names no image source (data.source)")
    return source


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W) -> float (B, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(255.0)[:, None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (C, H, W) or (H, W) in [0, 1] -> uint8 (H, W) (one channel) or (H, W, 3)."""
    x = x.detach().float().clamp(0, 1)
    if x.dim() == 3:
        x = x[0] if x.size(0) == 1 else x.permute(1, 2, 0)
    return (x * 255).round().to(torch.uint8).numpy()


def tile(images: torch.Tensor, cols: int, pad: int = 1) -> torch.Tensor:
    """(N, C, H, W) -> one (C, rows * (H + pad) - pad, cols * (W + pad) - pad) grid, white padding."""
    n, c, h, w = images.shape
    rows = -(-n // cols)
    grid = torch.ones(c, rows * (h + pad) - pad, cols * (w + pad) - pad)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = images[i]
    return grid


def upscale(image: np.ndarray, size: int = 192) -> np.ndarray:
    """Nearest-neighbour enlargement so an 8x8 digit is visible (the pixels stay square)."""
    f = max(1, size // max(image.shape[:2]))
    return image.repeat(f, axis=0).repeat(f, axis=1)


def check_family(family: str, allowed: tuple[str, ...], page: str) -> None:
    if family not in allowed:
        names = " or ".join(allowed)
        raise ConfigError(f"the {page} view needs a {names} run; this is a {family} run")


# --- VAE and GAN ---------------------------------------------------------------------------


@torch.no_grad()
def decode_latent(vae: nn.Module, z: list[float], label: int | None = None) -> np.ndarray:
    """The mean image of p(x | z) for one latent vector (its first len(z) dimensions; the rest 0)."""
    L = vae.config.latent_dim
    v = torch.zeros(1, L)
    v[0, : min(L, len(z))] = torch.tensor(z[:L], dtype=torch.float)
    y = torch.tensor([label]) if vae.config.n_classes else None
    return to_uint8(vae.mean_image(vae.decode(v, y))[0])


@torch.no_grad()
def interpolation(vae: nn.Module, source: str, a: int, b: int, steps: int = 8) -> np.ndarray:
    """Decoded images along the straight line between the latent means of test images a and b."""
    images, labels = test_images(source)
    for i in (a, b):
        if not 0 <= i < len(images):
            raise ConfigError(f"test image {i} does not exist: pick 0 to {len(images) - 1}")
    x = to_tensor(images[[a, b]])
    y = torch.from_numpy(labels[[a, b]].astype(np.int64)) if vae.config.n_classes else None
    row = vae.interpolate(x[:1], x[1:], steps, None if y is None else y[:1], None if y is None else y[1:])[0]
    return to_uint8(tile(torch.cat([x[:1], row, x[1:]]), steps + 2))


@torch.no_grad()
def reconstructions(vae: nn.Module, source: str, n: int = 8, start: int = 0) -> np.ndarray:
    """Test images (top row) over their reconstructions from the posterior mean (bottom row)."""
    images, labels = test_images(source)
    x = to_tensor(images[start : start + n])
    y = torch.from_numpy(labels[start : start + n].astype(np.int64)) if vae.config.n_classes else None
    return to_uint8(tile(torch.cat([x, vae.reconstruct(x, y)]), len(x)))


@torch.no_grad()
def sample_grid(model: nn.Module, seed: int, n: int = 16) -> np.ndarray:
    """n samples of a VAE or GAN drawn with ``seed`` (a conditional model cycles through the classes)."""
    gen = torch.Generator().manual_seed(int(seed))
    k = model.config.n_classes or 0
    cols = k if k and n % k == 0 else int(np.ceil(np.sqrt(n)))
    return to_uint8(tile(model.sample(n, generator=gen), cols))


@torch.no_grad()
def anomaly_scores(vae: nn.Module, config: dict, source: str, limit: int = 2000) -> tuple[int, dict[int, np.ndarray]]:
    """(held-out class, -ELBO per test image grouped by class, nats) for a VAE trained without one
    class (``data.exclude_class``); ConfigError when the run kept every class."""
    held = int((config.get("data") or {}).get("exclude_class", -1))
    if held < 0:
        raise ConfigError("this run was trained on every class: anomaly scores need a run with data.exclude_class set")
    images, labels = test_images(source)
    images, labels = images[:limit], labels[:limit]
    gen = torch.get_rng_state()
    torch.manual_seed(0)  # one draw of z per image: the same scores every time
    try:
        scores = torch.cat([negative_elbo(vae, to_tensor(images[i : i + 500])) for i in range(0, len(images), 500)])
    finally:
        torch.set_rng_state(gen)
    s = scores.numpy()
    return held, {int(c): s[labels == c] for c in np.unique(labels)}


# --- CNN -----------------------------------------------------------------------------------


def read_upload(data: bytes | str, size: int, channels: int = 1) -> np.ndarray:
    """An uploaded file (bytes or a path) -> uint8 (size, size) grey image as the CNN expects; DataError
    when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src) as im:
            if im.width * im.height > MAX_UPLOAD_PIXELS:
                raise DataError(f"the image is {im.width}x{im.height}; the studio takes up to 4096x4096 pixels")
            im = im.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError("the uploaded file is not an image that can be read (PNG, JPEG, GIF, BMP, ...)") from e


@torch.no_grad()
def feature_maps(cnn: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every stage's activations (C_s, H_s, W_s) for one uint8 (H, W) image, plus the class probabilities."""
    out = cnn.features(to_tensor(image[None]))
    maps = {k: v[0].numpy() for k, v in out.items() if k not in ("input", "logits")}
    maps["probs"] = torch.softmax(out["logits"][0], -1).numpy()
    return maps


def normalise(a: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 255] on its own range (a constant map is black)."""
    lo, hi = a.min(axis=(-2, -1), keepdims=True), a.max(axis=(-2, -1), keepdims=True)
    return ((a - lo) / np.where(hi > lo, hi - lo, 1.0) * 255).round().astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
