"""Projection, clustering and nearest neighbours of feature vectors: numpy in, numpy out.

The computational core of ``genlab cluster``, ``genlab project`` and the studio's Projector
page. Features are an (N, D) array, one row per point (a VAE latent mean, a CNN feature vector,
a sentence embedding, a flattened image). scikit-learn and umap-learn do the work; they are
imported inside the functions (the ``studio`` extra), so importing this module costs nothing.

Projection to ``dim`` coordinates (:func:`project`):

* ``pca``: the top principal directions, x -> (x - mean) V_dim (Pearson 1901; an SVD).
* ``tsne``: t-SNE (van der Maaten & Hinton 2008, JMLR 9) matches the neighbour probabilities
  p_{j|i} ∝ exp(-||x_i - x_j||² / 2σ_i²) (σ_i set by the perplexity) with a Student-t kernel
  q_ij ∝ (1 + ||y_i - y_j||²)^-1 in the plane, minimising KL(P || Q); Barnes-Hut approximation
  (van der Maaten 2014), so ``dim`` <= 3. Inputs of more than 50 dimensions are first reduced to
  their top 50 principal components, as the t-SNE paper recommends.
* ``umap``: UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426), a fuzzy k-nearest-neighbour
  graph laid out by cross entropy.

Clustering into ``k`` groups (:func:`cluster`):

* ``kmeans``: Lloyd's algorithm from k-means++ seeds (Arthur & Vassilvitskii 2007), the best
  of 4 starts by inertia sum_i ||x_i - c(i)||².
* ``gmm``: a Gaussian mixture fitted by EM (Dempster, Laird & Rubin 1977), each point given its
  most probable component; full covariances up to 64 dimensions, diagonal ones above (a full
  784 x 784 covariance per component of raw pixels is both slow and singular).

Scores against known labels (:func:`cluster_scores`): normalised mutual information,
NMI = I(Y; C) / ((H(Y) + H(C)) / 2), and the adjusted Rand index (Hubert & Arabie 1985), the
pair-counting agreement corrected so that a random labelling scores 0 on average. Both are 1 for
a clustering equal to the labels up to renaming, and neither cares how many clusters there are.

Nearest neighbours (:func:`nearest`) are by cosine similarity in the full feature space,
x_i . x_j / (||x_i|| ||x_j||), never in the projection.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from genlab.core.errors import ConfigError, DataError

#: The most points each projection method takes: t-SNE's cost grows as N log N with a large
#: constant (minutes at 10,000 points on one core), UMAP's more gently, PCA's linearly.
MAX_POINTS: dict[str, int] = {"pca": 200_000, "tsne": 10_000, "umap": 50_000}

PROJECTIONS = tuple(MAX_POINTS)
CLUSTERINGS = ("kmeans", "gmm")
TSNE_PCA_DIMS = 50  # t-SNE runs on the top 50 principal components of wider inputs
GMM_FULL_MAX_DIM = 64  # full covariances up to this many dimensions, diagonal above

#: ``progress(fraction, desc=...)``: the signature of ``gradio.Progress``'s call.
Progress = Callable[..., object]


def _features(x: np.ndarray, name: str = "features") -> np.ndarray:
    """``x`` as a finite float (N, D) array, or a one-line DataError."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (points, dimensions), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{name} are empty (shape {a.shape}): need at least one point of at least one dimension")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"{name} must be real numbers, got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise DataError(f"{name} hold NaN or infinite values (first in row {bad}): remove or fix those rows")
    return a


def _report(progress: Progress | None, fraction: float, desc: str) -> None:
    if progress is not None:
        progress(fraction, desc=desc)


def project(
    x: np.ndarray, method: str = "pca", dim: int = 2, seed: int = 0, progress: Progress | None = None
) -> np.ndarray:
    """The (N, ``dim``) float32 coordinates of the rows of ``x`` (N, D) under ``method``:
    ``pca``, ``tsne`` or ``umap`` (see the module docstring). ``seed`` fixes the result.

    ``progress``, if given, is called as ``progress(fraction, desc=...)`` (``gradio.Progress``
    fits) at the start, between stages and at the end; t-SNE and UMAP report nothing from inside
    their optimisation (neither library has a callback), so a long run shows its stage, not a
    percentage. Past ``MAX_POINTS[method]`` points, or with a ``dim`` the method cannot give, it
    raises a one-line ConfigError before any work.
    """
    if method not in MAX_POINTS:
        raise ConfigError(f"unknown projection {method!r}: use one of {', '.join(PROJECTIONS)}")
    a = _features(x)
    n, d = a.shape
    limit = MAX_POINTS[method]
    if n > limit:
        raise ConfigError(
            f"{method} takes at most {limit:,} points, got {n:,}: use a sample of at most {limit:,}"
            f"{' or pca' if method != 'pca' else ''}"
        )
    if not isinstance(dim, int | np.integer) or dim < 1:
        raise ConfigError(f"projection dimension must be a positive integer, got {dim!r}")
    if method == "pca" and dim > min(n, d):
        raise ConfigError(f"pca gives at most min(points, dimensions) = {min(n, d)} coordinates, asked for {dim}")
    if method == "tsne" and dim > 3:
        raise ConfigError(f"tsne (Barnes-Hut) gives at most 3 coordinates, asked for {dim}: use pca or umap")
    if method != "pca" and n < 4:
        raise ConfigError(f"{method} needs at least 4 points, got {n}: use pca")
    if method == "umap" and dim >= n - 1:
        raise ConfigError(f"umap of {n} points gives at most {n - 2} coordinates, asked for {dim}")

    if method == "pca":
        from sklearn.decomposition import PCA

        _report(progress, 0.0, f"PCA of {n:,} points")
        y = PCA(n_components=dim, random_state=seed).fit_transform(a)
    elif method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if d > TSNE_PCA_DIMS and n > TSNE_PCA_DIMS:
            _report(progress, 0.0, f"t-SNE: PCA of {n:,} points to {TSNE_PCA_DIMS} dimensions")
            a = PCA(n_components=TSNE_PCA_DIMS, random_state=seed).fit_transform(a)
        perplexity = min(30.0, (n - 1) / 3)  # sklearn needs perplexity < N; 30 is the usual value
        _report(progress, 0.05, f"t-SNE of {n:,} points (perplexity {perplexity:g}): optimising")
        y = TSNE(n_components=dim, perplexity=perplexity, init="pca", random_state=seed).fit_transform(a)
    else:
        _report(progress, 0.0, f"UMAP of {n:,} points: loading umap-learn")
        import umap

        _report(progress, 0.05, f"UMAP of {n:,} points: nearest-neighbour graph and layout")
        reducer = umap.UMAP(n_components=dim, n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1)
        y = reducer.fit_transform(a)
    _report(progress, 1.0, f"{method}: done ({n:,} points)")
    return np.ascontiguousarray(y, dtype=np.float32)


def cluster(x: np.ndarray, method: str = "kmeans", k: int = 10, seed: int = 0) -> np.ndarray:
    """Cluster labels (N,) int64 in [0, k) of the rows of ``x`` (N, D): ``kmeans`` or ``gmm``
    (see the module docstring). ``seed`` fixes the result. Bad input is a one-line GenlabError."""
    if method not in CLUSTERINGS:
        raise ConfigError(f"unknown clustering {method!r}: use one of {', '.join(CLUSTERINGS)}")
    a = _features(x)
    n, d = a.shape
    if not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"number of clusters must be a positive integer, got {k!r}")
    if k > n:
        raise ConfigError(f"cannot make {k} clusters of {n} points: use at most {n}")
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(a)
    else:
        from sklearn.mixture import GaussianMixture

        cov = "full" if d <= GMM_FULL_MAX_DIM else "diag"
        gmm = GaussianMixture(n_components=k, covariance_type=cov, reg_covar=1e-4, random_state=seed)
        labels = gmm.fit(a).predict(a)
    return labels.astype(np.int64)


def cluster_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``{"nmi", "ari"}`` of the clustering ``pred`` against the labels ``truth`` (two (N,) vectors
    of one length, any hashable label values): normalised mutual information (arithmetic mean of
    the entropies) and the adjusted Rand index; both 1.0 for a perfect clustering."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    p, t = np.asarray(pred), np.asarray(truth)
    if p.ndim != 1 or t.ndim != 1 or p.shape != t.shape:
        raise DataError(f"clusters {p.shape} and labels {t.shape} must be two vectors of one length")
    if len(p) == 0:
        raise DataError("no points to score: clusters and labels are empty")
    return {"nmi": float(normalized_mutual_info_score(t, p)), "ari": float(adjusted_rand_score(t, p))}


def nearest(x: np.ndarray, i: int | np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``x`` (N, D) most cosine-similar to row ``i``, excluding ``i`` itself:
    ``(indices, similarities)``, best first, each (k,) for an int ``i`` or (M, k) for M query rows.

    ``k`` is cut to N - 1 (there are no more neighbours). Ties go to the lower index. A zero
    row has similarity 0 to everything. Similarities are float32 in [-1, 1]."""
    a = _features(x)
    n = a.shape[0]
    single = np.ndim(i) == 0
    q = np.atleast_1d(np.asarray(i))
    if q.ndim != 1 or not np.issubdtype(q.dtype, np.integer):
        raise DataError(f"query must be a row index or a vector of row indices, got {np.asarray(i)!r}")
    if ((q < 0) | (q >= n)).any():
        bad = int(q[(q < 0) | (q >= n)][0])
        raise DataError(f"row {bad} is out of range: there are {n} points (0 to {n - 1})")
    if not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"number of neighbours must be a positive integer, got {k!r}")
    if n < 2:
        raise DataError("one point has no neighbours")
    k = min(int(k), n - 1)
    norms = np.linalg.norm(a, axis=1, keepdims=True)  # (N, 1)
    u = a / np.maximum(norms, 1e-12)  # unit rows; a zero row stays zero
    sims = u[q] @ u.T  # (M, N)
    sims[np.arange(len(q)), q] = -np.inf  # never one's own neighbour
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)  # (M, k); stable: ties to the lower index
    out = np.take_along_axis(sims, idx, axis=1).astype(np.float32)
    np.clip(out, -1.0, 1.0, out=out)
    return (idx[0], out[0]) if single else (idx, out)
