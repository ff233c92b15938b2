"""``genlab cluster``, ``genlab project`` and ``genlab basket``: the unsupervised tools on the command line.

    genlab cluster runs/vae-fashion --method gmm --k 10            # NMI / ARI against the test labels
    genlab project runs/cnn-fashion --method tsne --out xy.npy --png xy.png
    genlab basket --min-support 0.01 --min-confidence 0.5 --top 20

FEATURES, the points to cluster or project (:func:`load_features`), is one of

* a run directory: a ``vae`` run gives the latent means mu(x) of its image set's test images
  (the encoder's mean; a conditional VAE's encoder also sees the label), a ``cnn`` run the
  penultimate features (the input of its last linear layer, FID-FMNIST's feature space), a
  ``vit`` run its pooled representation, a ``gpt`` run its token embeddings (the rows of the
  embedding table, one per vocabulary entry, named by the token's text);
* ``fashion-mnist-pixels`` / ``digits-pixels``: the raw test images, flattened, in [0, 1];
* ``fashion-mnist-pca50`` / ``digits-pca50``: the top 50 principal components of those pixels,
  fitted on the same test images (no labels used);
* ``minilm:FILE.txt``: MiniLM sentence embeddings of a text file, one text per line (what
  ``genlab embed minilm`` computes; embed with another encoder by ``genlab embed`` and pass the .npy);
* a ``.npy`` file (N, D), or a ``.npz`` with ``latents`` (what ``genlab latents`` writes) or ``x``,
  and ``labels`` when it has them.

Image features come with their class labels; ``labels=`` (a ``.npy`` of N integers, or a text file
of N lines) gives labels to the others or replaces them. The computations are
:mod:`genlab.eval.clustering` and :mod:`genlab.eval.baskets`; this module reads the inputs,
writes the files and draws the PNG.
"""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import ConfigError, DataError, RunDirError
from genlab.data.baskets import load_baskets
from genlab.data.images import FASHION_CLASSES, IMAGE_SOURCES, load_images, to_float
from genlab.data.sources import read_text
from genlab.eval.baskets import association_rules, frequent_itemsets
from genlab.eval.clustering import cluster, cluster_scores, project
from genlab.runs import is_run_dir, load_run, read_run_config

IMAGE_KINDS = {"fashion-mnist": "real", "digits": "real"}
CLASS_NAMES = {"fashion-mnist": list(FASHION_CLASSES), "digits": [str(d) for d in range(10)]}
RUN_FAMILIES = ("vae", "cnn", "vit", "gpt")
PCA_DIMS = 50
_BATCH = 1000


@dataclass
class Features:
    """Points to cluster or project: ``x`` float32 (N, D); ``labels`` int64 (N,) or None, with the name
    of each label value in ``label_names``; ``point_names`` a name per point (tokens, text lines) or
    None; ``source`` says what they are and ``kind`` the data's kind (real / templated / generated)."""

    x: np.ndarray
    labels: np.ndarray | None
    label_names: list[str] | None
    point_names: list[str] | None
    source: str
    kind: str


def forms() -> str:
    images = ", ".join(f"{s}-pixels, {s}-pca50" for s in IMAGE_SOURCES)
    return f"a vae/cnn/vit/gpt run directory, {images}, minilm:FILE.txt, or a .npy/.npz file"


# --- features ----------------------------------------------------------------------------------


def _image_set(source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise ConfigError(f"split must be train or test, got '{split}'")
    return load_images(source, split)


@torch.no_grad()
def _run_features(run_dir: Path, split: str, which: str) -> Features:
    config = read_run_config(run_dir)
    family = (config.get("model") or {}).get("family") or "unknown"
    if config.get("head"):
        family = f"{family} reward"
    if family not in RUN_FAMILIES:
        hint = ""
        if family == "bert":
            hint = " (embed texts with 'genlab embed RUN --input F --output f.npy', then pass f.npy)"
        raise ConfigError(f"{run_dir} is a {family} run: features come from {', '.join(RUN_FAMILIES)} runs{hint}")
    model, tok, config = load_run(run_dir, which)
    if family == "gpt":
        w = model.tok_emb.weight.detach().float().numpy()  # (V, C)
        names = [tok.decode([i]) for i in range(w.shape[0])] if tok is not None else None
        return Features(w.copy(), None, None, names, f"token embeddings of {run_dir} ({w.shape[0]} tokens)", "learned")
    source = (config.get("data") or {}).get("source")
    if source not in IMAGE_SOURCES:
        known = sorted(IMAGE_SOURCES)
        raise ConfigError(f"{run_dir} trained on '{source}', not an image source genlab knows ({known})")
    images, labels = _image_set(source, split)
    x = to_float(torch.from_numpy(images))  # (N, 1, H, W)
    y = torch.from_numpy(labels.astype(np.int64))
    out = []
    for i in range(0, len(x), _BATCH):
        xb = x[i : i + _BATCH]
        if family == "vae":
            cond = y[i : i + _BATCH] if model.config.n_classes else None
            out.append(model.encode(xb, cond)[0])  # the mean mu(x), not a sample
        elif family == "cnn":
            out.append(model.embed(xb))
        else:
            out.append(model.features(xb))
    what = {"vae": "VAE latent means", "cnn": "CNN penultimate features", "vit": "ViT pooled features"}[family]
    if family == "vae" and model.config.n_classes:
        what += " (conditional: the encoder sees the label)"
    feats = torch.cat(out).float().numpy()
    return Features(
        feats,
        labels.astype(np.int64),
        CLASS_NAMES.get(source),
        None,
        f"{what} of the {source} {split} images under {run_dir}",
        IMAGE_KINDS.get(source, "real"),
    )


def _pixel_features(spec: str, split: str) -> Features:
    source, _, what = spec.rpartition("-")
    images, labels = _image_set(source, split)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0  # (N, H * W)
    text = f"raw pixels of the {source} {split} images"
    if what == "pca50":
        x = project(x, "pca", dim=min(PCA_DIMS, *x.shape), seed=0)
        text = f"PCA-{x.shape[1]} of the pixels of the {source} {split} images (fitted on those images)"
    return Features(x, labels.astype(np.int64), CLASS_NAMES.get(source), None, text, IMAGE_KINDS.get(source, "real"))


def _text_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} is not a file: give a UTF-8 text file with one text per line")
    lines = read_text(path.resolve()).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise DataError(f"{path}: line {blank[0]} is empty: one text per line, no blank lines (an empty text has no "
                        "embedding)")  # fmt: skip
    if not lines:
        raise DataError(f"{path} is empty: give one text per line")
    return lines


def _minilm_features(path: Path) -> Features:
    from genlab.eval.embeddings import embed_texts
    from genlab.runs.encoders import load_encoder

    lines = _text_lines(path)
    encoder = load_encoder("minilm")
    x, _ = embed_texts(encoder, lines, name=f"{path}: line")
    return Features(x, None, None, lines, f"MiniLM sentence embeddings of {path} ({len(lines)} lines)", "your text")


def _array_features(path: Path) -> Features:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = next((k for k in ("latents", "x") if k in z.files), None)
                if key is None:
                    raise DataError(f"{path} holds {sorted(z.files)}: an .npz needs an array 'latents' or 'x'")
                x, labels = z[key], (z["labels"] if "labels" in z.files else None)
        else:
            x, labels = np.load(path, allow_pickle=False), None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path} as a numpy array ({exc}): give a .npy of shape (N, D)") from exc
    if x.ndim != 2:
        raise DataError(f"{path} holds an array of shape {x.shape}: features must be (points, dimensions)")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path} holds {x.dtype} values: features must be numbers")
    if labels is not None:
        labels = _int_labels(labels, len(x), f"the labels in {path}")
    return Features(x.astype(np.float32), labels, None, None, f"the array in {path}", "your data")


def _int_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DataError(f"{where} have shape {labels.shape}, but there are {n} points: give one label per point")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where} are {labels.dtype}: give integer class ids (or a text file of names)")
    return labels.astype(np.int64)


def read_labels(path: str | Path, n: int) -> tuple[np.ndarray, list[str] | None]:
    """Labels for ``n`` points: a ``.npy`` of n integers, or a text file of n lines (each distinct line a
    class; the names come back in id order, ids by first appearance)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no labels file {path}: give a .npy of integers or a text file with one label per line")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read {path} as a numpy array ({exc})") from exc
        return _int_labels(arr, n, f"the labels in {path}"), None
    lines = read_text(path.resolve()).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != n:
        raise DataError(f"{path} has {len(lines)} lines, but there are {n} points: give one label per point")
    ids: dict[str, int] = {}
    labels = np.array([ids.setdefault(s.strip(), len(ids)) for s in lines], dtype=np.int64)
    return labels, list(ids)


def load_features(
    spec: str | os.PathLike, labels: str | os.PathLike | None = None, limit: int = 0, split: str = "test",
    which: str = "best",
) -> Features:  # fmt: skip
    """The points named by ``spec`` (see the module docstring), their first ``limit`` rows (0: all),
    with the labels of ``labels`` if given."""
    if limit < 0:
        raise ConfigError(f"limit must be 0 (all) or a positive number of points, got {limit}")
    text = os.fspath(spec)
    path = Path(text)
    image_specs = {f"{s}-{w}" for s in IMAGE_SOURCES for w in ("pixels", "pca50")}
    if text in image_specs:
        feats = _pixel_features(text, split)
    elif text.startswith("minilm:"):
        feats = _minilm_features(Path(text[len("minilm:") :]))
    elif path.is_dir():
        if not is_run_dir(path):
            raise RunDirError(f"{path} is a folder but not a run directory (no config.yaml): give {forms()}")
        feats = _run_features(path, split, which)
    elif path.suffix in (".npy", ".npz"):
        if not path.is_file():
            raise DataError(f"no file {path}")
        feats = _array_features(path)
    else:
        raise ConfigError(f"cannot read features from '{text}': give {forms()}")
    if labels is not None:
        feats.labels, feats.label_names = read_labels(labels, len(feats.x))
    if limit and limit < len(feats.x):
        feats.x = feats.x[:limit]
        feats.labels = None if feats.labels is None else feats.labels[:limit]
        feats.point_names = None if feats.point_names is None else feats.point_names[:limit]
    return feats


# --- outputs ----------------------------------------------------------------------------------


def _check_out(path: Path | None, overwrite: bool, suffix: str) -> None:
    if path is None:
        return
    if path.suffix != suffix:
        raise ConfigError(f"{path} should end in {suffix}")
    if path.is_dir():
        raise RunDirError(f"{path} is a directory: name the {suffix} file to write")
    if path.exists() and not overwrite:
        raise RunDirError(f"{path} exists: add --overwrite to replace it, or choose another name")


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cluster_features(
    feats: Features, method: str = "kmeans", k: int = 10, seed: int = 0, out: Path | None = None,
    overwrite: bool = False,
) -> dict:  # fmt: skip
    """Cluster ``feats`` and report the cluster sizes and, with labels, NMI and ARI; ``out`` gets the
    cluster of each point (int64 .npy)."""
    _check_out(out, overwrite, ".npy")
    pred = cluster(feats.x, method, k, seed)
    result: dict = {
        "features": feats.source,
        "kind": feats.kind,
        "points": int(feats.x.shape[0]),
        "dim": int(feats.x.shape[1]),
        "method": method,
        "k": int(k),
        "seed": seed,
        "sizes": np.bincount(pred, minlength=k).tolist(),
    }
    if feats.labels is not None:
        result.update(cluster_scores(pred, feats.labels))
    if out is not None:
        _save_npy(out, pred)
        result["out"] = str(out)
    return result


def plot_projection(coords: np.ndarray, colours: np.ndarray | None, names: list[str] | None, title: str,
                    path: Path) -> None:  # fmt: skip
    """A scatter plot of 2-D or 3-D ``coords`` as a PNG, coloured by the integer ``colours`` (a legend with
    ``names`` when there are at most 20 values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dim = coords.shape[1]
    if dim not in (2, 3):
        raise ConfigError(f"a PNG shows 2 or 3 coordinates, got {dim}: use --dim 2 or 3, or leave out --png")
    fig = plt.figure(figsize=(8, 7), dpi=110)
    ax = fig.add_subplot(projection="3d" if dim == 3 else None)
    size = max(1.0, min(20.0, 20000 / len(coords)))
    cols = [coords[:, j] for j in range(dim)]
    if colours is None:
        ax.scatter(*cols, s=size, c="tab:blue", alpha=0.7, linewidths=0)
    else:
        values = np.unique(colours)
        if len(values) <= 20:
            cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
            for j, v in enumerate(values):
                m = colours == v
                label = names[v] if names is not None and 0 <= v < len(names) else str(v)
                ax.scatter(*[c[m] for c in cols], s=size, color=cmap(j), alpha=0.7, linewidths=0, label=label)
            ax.legend(markerscale=max(1.0, 6 / np.sqrt(size)), fontsize=8, loc="best", framealpha=0.8)
        else:
            ax.scatter(*cols, s=size, c=colours, cmap="viridis", alpha=0.7, linewidths=0)
    ax.set_title(textwrap.fill(title, 90), fontsize=9)  # a long source path wraps instead of running off
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _stderr_progress(fraction: float, desc: str = "") -> None:
    print(f"[{100 * fraction:3.0f}%] {desc}", file=sys.stderr, flush=True)


def project_features(
    feats: Features, method: str = "pca", dim: int = 2, seed: int = 0, out: Path | None = None,
    png: Path | None = None, colour: str = "label", k: int = 10, overwrite: bool = False, progress: bool = True,
) -> dict:  # fmt: skip
    """Project ``feats`` to ``dim`` coordinates; ``out`` gets them (float32 .npy), ``png`` a scatter plot
    coloured by ``colour``: ``label``, ``kmeans`` / ``gmm`` (k clusters of the full features) or ``none``."""
    if colour not in ("label", "kmeans", "gmm", "none"):
        raise ConfigError(f"colour by label, kmeans, gmm or none, got '{colour}'")
    if colour == "label" and png is not None and feats.labels is None:
        colour = "none"  # nothing to colour by: one colour
    if out is None and png is None:
        raise ConfigError("nothing to write: give --out coords.npy and/or --png plot.png")
    _check_out(out, overwrite, ".npy")
    _check_out(png, overwrite, ".png")
    if png is not None and dim not in (2, 3):
        raise ConfigError(f"a PNG shows 2 or 3 coordinates, got --dim {dim}: use 2 or 3, or leave out --png")
    coords = project(feats.x, method, dim, seed, progress=_stderr_progress if progress else None)
    result = {
        "features": feats.source,
        "kind": feats.kind,
        "points": int(feats.x.shape[0]),
        "dim_in": int(feats.x.shape[1]),
        "method": method,
        "dim": int(dim),
        "seed": seed,
    }
    if out is not None:
        _save_npy(out, coords)
        result["out"] = str(out)
    if png is not None:
        colours, names = None, None
        if colour == "label":
            colours, names = feats.labels, feats.label_names
        elif colour in ("kmeans", "gmm"):
            colours = cluster(feats.x, colour, k, seed)
            result.update({"colour": f"{colour} k={k}"})
            if feats.labels is not None:
                result.update(cluster_scores(colours, feats.labels))
        title = f"{method} of {feats.source} ({len(coords):,} points, {feats.kind} data)"
        if colour in ("kmeans", "gmm"):
            title += f", coloured by {colour} k={k}"
        plot_projection(coords, colours, names, title, png)
        result["png"] = str(png)
    return result


# --- market baskets ---------------------------------------------------------------------------


def basket_rules(
    transactions: str | os.PathLike | None = None, min_support: float = 0.01, min_confidence: float = 0.5,
    max_len: int | None = 3, top: int = 20,
) -> dict:  # fmt: skip
    """Apriori and association rules on ``transactions`` (a file, or None / ``debian-depends`` for the
    Debian dependency baskets): the counts and the ``top`` rules by lift."""
    if top < 0:
        raise ConfigError(f"--top must be 0 (all) or positive, got {top}")
    b = load_baskets(transactions if transactions is not None else "debian-depends")
    itemsets = frequent_itemsets(b.items, min_support, max_len)
    rules = association_rules(b.items, min_support, min_confidence, max_len)
    return {
        "source": b.source,
        "kind": b.kind,
        "baskets": len(b.items),
        "items": len({i for basket in b.items for i in basket}),
        "min_support": min_support,
        "min_confidence": min_confidence,
        "max_len": max_len,
        "frequent_itemsets": len(itemsets),
        "rules": len(rules),
        "top": [r.as_dict() for r in (rules[:top] if top else rules)],
    }
