"""Projection, clustering, scores and cosine neighbours on data whose answer is known."""

import sys
import types

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors

from genlab.core.errors import ConfigError, DataError, GenlabError
from genlab.eval.clustering import MAX_POINTS, cluster, cluster_scores, nearest, project


def blobs(n_per: int = 40, k: int = 4, d: int = 8, spread: float = 0.05, seed: int = 0):
    """k tight, far-apart Gaussian blobs in d dimensions, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_well_separated_blobs_are_found(method):
    x, y = blobs()
    pred = cluster(x, method, k=4, seed=0)
    assert pred.shape == y.shape and pred.dtype == np.int64
    assert set(pred.tolist()) == {0, 1, 2, 3}
    s = cluster_scores(pred, y)
    assert s["nmi"] == pytest.approx(1.0) and s["ari"] == pytest.approx(1.0)
    assert np.array_equal(cluster(x, method, k=4, seed=0), pred)  # the seed fixes the result


def test_gmm_switches_to_diagonal_covariances_on_wide_features():
    x, y = blobs(n_per=30, k=3, d=100)  # 100 > 64 dims: diagonal; full would be 3 x 100 x 100 on 90 points
    assert cluster_scores(cluster(x, "gmm", k=3), y)["nmi"] == pytest.approx(1.0)


def test_cluster_scores_match_their_definitions():
    truth = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_scores(np.array([5, 5, 5, 9, 9, 9]), truth) == {"nmi": 1.0, "ari": 1.0}  # renaming is free
    pred = np.array([0, 0, 1, 1, 2, 2])
    # ARI by hand: pairs together in both: {0,1},{4,5} -> 2; in truth: 2 * C(3,2) = 6; in pred: 3 * 1 = 3;
    # expected = 6 * 3 / C(6,2) = 1.2; max = (6 + 3) / 2 = 4.5 -> (2 - 1.2) / (4.5 - 1.2)
    s = cluster_scores(pred, truth)
    assert s["ari"] == pytest.approx((2 - 1.2) / (4.5 - 1.2))
    # NMI by hand: I(Y;C) = H(Y) - H(Y|C); H(Y) = ln 2, H(C) = ln 3, H(Y|C) = (1/3) ln 2 (the middle cluster)
    i = np.log(2) - np.log(2) / 3
    assert s["nmi"] == pytest.approx(i / ((np.log(2) + np.log(3)) / 2))
    rng = np.random.default_rng(1)
    p, t = rng.integers(0, 5, 300), rng.integers(0, 3, 300)
    s = cluster_scores(p, t)
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(t, p))
    assert s["ari"] == pytest.approx(adjusted_rand_score(t, p))
    assert abs(s["ari"]) < 0.05  # random labels: ~0
    with pytest.raises(DataError, match="one length"):
        cluster_scores(np.zeros(3), np.zeros(4))


def test_nearest_is_cosine_and_excludes_the_query():
    x = np.array([[1.0, 0.0], [10.0, 0.1], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]], np.float32)
    idx, sim = nearest(x, 0, k=4)
    # row 1 is far away in Euclidean distance but points the same way: cosine puts it first
    assert idx.tolist() == [1, 4, 2, 3]
    assert sim == pytest.approx([10 / np.hypot(10, 0.1), 1 / np.sqrt(2), 0.0, -1.0], abs=1e-6)
    assert 0 not in idx
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 16)).astype(np.float32)
    q = np.array([3, 50, 199])
    idx, sim = nearest(z, q, k=7)
    assert idx.shape == sim.shape == (3, 7)
    assert not (idx == q[:, None]).any()
    assert (np.diff(sim, axis=1) <= 1e-7).all()  # best first
    ref = NearestNeighbors(n_neighbors=8, metric="cosine", algorithm="brute").fit(z)  # the reference path
    dist, ref_idx = ref.kneighbors(z[q])
    assert np.array_equal(idx, ref_idx[:, 1:])  # [:, 0] is the query itself
    assert sim == pytest.approx(1 - dist[:, 1:], abs=1e-5)


def test_nearest_cuts_k_breaks_ties_by_index_and_rejects_bad_rows():
    x = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    idx, sim = nearest(x, 1, k=10)
    assert idx.tolist() == [0, 2, 3]  # k cut to N - 1; 0 and 2 tie at 1.0, lower index first
    assert sim.tolist() == [1.0, 1.0, 0.0]  # the zero row has similarity 0
    with pytest.raises(DataError, match="out of range"):
        nearest(x, 4)
    with pytest.raises(DataError, match="out of range"):
        nearest(x, np.array([0, -1]))
    with pytest.raises(DataError, match="no neighbours"):
        nearest(x[:1], 0)


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.slow)])  # umap: ~30 s of JIT
def test_projection_keeps_the_blobs_apart(method):
    x, y = blobs(n_per=25, k=3, d=60)  # 60 > 50: t-SNE runs on PCA-50 first
    calls = []
    coords = project(x, method, dim=2, seed=0, progress=lambda f, desc: calls.append((f, desc)))
    assert coords.shape == (75, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert calls[0][0] == 0.0 and calls[-1][0] == 1.0 and all(isinstance(d, str) for _, d in calls)
    # the blobs stay separable in the plane: k-means on the coordinates recovers them
    assert cluster_scores(cluster(coords, "kmeans", k=3), y)["nmi"] == pytest.approx(1.0)
    assert np.array_equal(project(x, method, dim=2, seed=0), coords)  # the seed fixes the result


def test_umap_is_called_with_the_seed_and_a_neighbourhood_that_fits(monkeypatch):
    """The fast stand-in for the slow umap case above (umap-learn compiles ~30 s of numba on first use):
    what project() hands to umap.UMAP and how it returns the layout."""
    seen = {}

    class FakeUMAP:
        def __init__(self, **kw):
            seen.update(kw)

        def fit_transform(self, a):
            seen["rows"] = a.shape
            return a[:, : seen["n_components"]].astype(np.float64)

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    x = np.random.default_rng(0).normal(size=(9, 5))
    coords = project(x, "umap", dim=3, seed=7)
    assert seen == {"n_components": 3, "n_neighbors": 8, "random_state": 7, "n_jobs": 1, "rows": (9, 5)}
    assert coords.dtype == np.float32 and coords == pytest.approx(x[:, :3])


def test_pca_is_the_top_principal_directions_and_three_d_works():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5)) * np.array([10.0, 5.0, 1.0, 0.1, 0.01])
    coords = project(x, "pca", dim=3)
    assert coords.shape == (100, 3)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # the reference: an SVD
    ref = centred @ vt[:3].T
    assert np.abs(coords) == pytest.approx(np.abs(ref), abs=1e-4)  # up to the sign of each axis
    assert project(x, "tsne", dim=3, seed=0).shape == (100, 3)


def test_projection_limits_and_bad_input_raise_one_line_errors():
    assert MAX_POINTS["tsne"] == 10_000 and set(MAX_POINTS) == {"pca", "tsne", "umap"}
    too_many = np.zeros((MAX_POINTS["tsne"] + 1, 2), np.float32)
    with pytest.raises(ConfigError, match="at most 10,000 points, got 10,001") as e:
        project(too_many, "tsne")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="at most 50,000"):
        project(np.zeros((MAX_POINTS["umap"] + 1, 2), np.float32), "umap")
    x = np.random.default_rng(0).normal(size=(20, 4))
    cases = [
        (lambda: project(x, "mds"), "unknown projection"),
        (lambda: project(x, "pca", dim=5), "at most"),
        (lambda: project(x, "tsne", dim=4), "at most 3"),
        (lambda: project(x, "pca", dim=0), "positive"),
        (lambda: project(x[:3], "umap"), "at least 4"),
        (lambda: project(x[0], "pca"), "2-D"),
        (lambda: project(np.zeros((0, 3)), "pca"), "empty"),
        (lambda: project(np.array([["a", "b"]]), "pca"), "real numbers"),
        (lambda: project(np.where(np.eye(20, 4) > 0, np.nan, x), "pca"), "NaN"),
        (lambda: cluster(x, "dbscan"), "unknown clustering"),
        (lambda: cluster(x, "kmeans", k=21), "at most 20"),
        (lambda: cluster(x, "gmm", k=0), "positive"),
        (lambda: nearest(x, 0, k=0), "positive"),
    ]
    for call, msg in cases:
        with pytest.raises(GenlabError, match=msg) as e:
            call()
        assert "\n" not in str(e.value)
