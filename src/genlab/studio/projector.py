"""The Projector page's points: embeddings of the user's own runs and files, with labels.

- a VAE run: the latent means mu(x) of test images, labelled by class;
- a CNN run: the features before the last linear layer (the FID-FMNIST space) of test images;
- a GPT run: its token embedding table, one point per token, labelled by the token;
- a BERT run (or ``minilm``): the sentence embeddings of a text file's lines (``label<TAB>text``
  lines carry a label);
- an ``.npz`` file as ``genlab encode`` writes it (``latents`` (N, D) and ``labels`` (N,)).

Projection, clustering, scores and neighbours are :mod:`genlab.eval.clustering`'s.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import ConfigError, DataError
from genlab.eval.clustering import MAX_POINTS
from genlab.eval.embeddings import embed_texts
from genlab.runs.encoders import Encoder
from genlab.studio import catalog
from genlab.studio.text import token_text
from genlab.studio.vision import run_source, test_images, to_tensor

PROJECTOR_FAMILIES = ("vae", "cnn", "gpt", "bert")
MAX_TEXT_LINES = MAX_POINTS["pca"]


@dataclass
class Points:
    """N embeddings (N, D) float32 with a name and an optional label per point."""

    x: np.ndarray
    names: list[str]
    labels: np.ndarray | None  # (N,) ints, or None when the source has none
    what: str  # one line: what the points are


def check_count(n: int, method: str) -> None:
    """The projector's limit, said before any embedding is computed."""
    limit = MAX_POINTS.get(method)
    if limit is not None and n > limit:
        raise ConfigError(f"{method} takes at most {limit:,} points; asked for {n:,}: lower the number of points")


@functools.lru_cache(maxsize=8)
def _run_points(run_dir: str, mtime: float, n: int) -> Points:
    model, tok, config = catalog.loaded(run_dir)
    fam = config["model"]["family"]
    if fam in ("vae", "cnn"):
        source = run_source(config)
        images, labels = test_images(source)
        images, labels = images[:n], labels[:n]
        with torch.no_grad():
            x = torch.cat(
                [
                    (
                        model.encode(to_tensor(images[i : i + 500]))[0]
                        if fam == "vae"
                        else model.embed(to_tensor(images[i : i + 500]))
                    )
                    for i in range(0, len(images), 500)
                ]
            )
        what = f"{'latent means' if fam == 'vae' else 'CNN features'} of {len(images):,} {source} test images"
        return Points(
            x.numpy().astype(np.float32),
            [f"#{i} class {c}" for i, c in enumerate(labels)],
            labels.astype(np.int64),
            what,
        )
    if fam == "gpt":
        w = model.tok_emb.weight.detach().float().numpy()[:n]
        names = [repr(token_text(tok, i)) for i in range(len(w))]
        return Points(w.astype(np.float32), names, None, f"{len(w):,} token embeddings of the GPT")
    raise ConfigError(f"the projector takes vae, cnn, gpt or bert runs; this is a {fam} run")


def run_points(run_dir: str, n: int) -> Points:
    """Points of a VAE, CNN or GPT run (see the module docstring), cached per run and checkpoint."""
    fam = catalog.family(run_dir)
    if fam not in PROJECTOR_FAMILIES:
        raise ConfigError(f"the projector takes vae, cnn, gpt or bert runs; this is a {fam} run")
    if fam == "bert":
        raise ConfigError("a bert run embeds a text file: upload one (one text per line, or label<TAB>text)")
    path = str(Path(run_dir).resolve())
    return _run_points(path, catalog.stamp(path), int(n))


def read_lines(data: bytes, n: int) -> tuple[list[str], list[str] | None]:
    """The first ``n`` non-empty lines of an uploaded text file; ``label<TAB>text`` lines give labels."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError("the uploaded file is not UTF-8 text (one text per line, or label<TAB>text)") from e
    lines = [line for line in text.splitlines() if line.strip()][:n]
    if not lines:
        raise DataError("the uploaded text file has no non-empty lines")
    if all("\t" in line for line in lines):
        labels, texts = zip(*(line.split("\t", 1) for line in lines))
        return list(texts), list(labels)
    return lines, None


def text_points(encoder: Encoder, data: bytes, n: int) -> Points:
    """Sentence embeddings of an uploaded text file's lines under a BERT encoder."""
    texts, labels = read_lines(data, n)
    x, _ = embed_texts(encoder, texts, name="line")
    ids = None
    if labels is not None:
        names = sorted(set(labels))
        ids = np.array([names.index(label) for label in labels], dtype=np.int64)
    shown = [t if len(t) <= 60 else t[:57] + "..." for t in texts]
    return Points(x.astype(np.float32), shown, ids, f"sentence embeddings of {len(texts):,} lines ({encoder.source})")


def npz_points(data: bytes, n: int) -> Points:
    """Points from an ``.npz`` upload: ``latents`` (or the first 2-D array) and ``labels`` if present."""
    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError("the uploaded file is neither a text file nor a NumPy .npz archive") from e
    arrays = {k: z[k] for k in z.files}
    key = "latents" if "latents" in arrays else next((k for k, a in arrays.items() if a.ndim == 2), None)
    if key is None:
        raise DataError("the .npz holds no 2-D array (points, dimensions)")
    x = arrays[key][:n].astype(np.float32)
    labels = arrays.get("labels")
    labels = labels[: len(x)].astype(np.int64) if labels is not None and len(labels) >= len(x) else None
    return Points(x, [f"#{i}" for i in range(len(x))], labels, f"{len(x):,} rows of '{key}' from the .npz")
