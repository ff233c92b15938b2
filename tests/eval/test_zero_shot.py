import numpy as np
import pytest

from genlab.core.errors import ConfigError, DataError
from genlab.eval import zero_shot as zs


def _clusters(n_per: int = 20, K: int = 3, dim: int = 8, spread: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:K] * 2.0
    x = np.concatenate([c + spread * rng.standard_normal((n_per, dim)) for c in centres])
    y = np.repeat(np.arange(K), n_per)
    return x, y, centres


def test_zero_shot_picks_the_most_cosine_similar_label():
    labels = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    texts = np.array([[5.0, 1.0], [0.1, 0.2], [-3.0, 2.0], [0.0, -1.0]])
    np.testing.assert_array_equal(zs.zero_shot_predict(texts, labels), [0, 1, 2, 0])
    x, y, centres = _clusters()
    assert (zs.zero_shot_predict(x, centres) == y).mean() > 0.95


def test_macro_f1_against_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))
    pred[pred == 4] = 3  # class 4 never predicted
    assert zs.macro_f1(pred, y, 5) == pytest.approx(f1_score(y, pred, average="macro"))
    s = zs.scores(pred, y, 5)
    assert s["accuracy"] == pytest.approx((pred == y).mean())


def test_fit_logistic_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    x, y, _ = _clusters(n_per=6, K=4, spread=0.8, seed=2)
    for C in (0.1, 1.0):
        ours = zs.fit_logistic(x, y, 4, C)
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(x, y)
        np.testing.assert_allclose(ours.weight, ref.coef_, atol=1e-4)
        # scikit-learn's intercepts are defined up to a shared constant (softmax is shift-invariant)
        np.testing.assert_allclose(ours.bias - ours.bias.mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-4)
        np.testing.assert_array_equal(ours.predict(x), ref.predict(x))


def test_k_per_class_is_seeded_and_balanced():
    y = np.repeat(np.arange(3), 10)
    idx = zs.k_per_class(y, 4, seed=1)
    assert np.bincount(y[idx]).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(idx, zs.k_per_class(y, 4, seed=1))
    assert not np.array_equal(idx, zs.k_per_class(y, 4, seed=2))
    with pytest.raises(DataError, match="fewer than k=11"):
        zs.k_per_class(y, 11, seed=0)
    with pytest.raises(ConfigError):
        zs.k_per_class(y, 0, seed=0)


def test_few_shot_learns_separable_clusters_and_picks_C_on_validation():
    x, y, _ = _clusters(n_per=40, K=3, spread=0.5)
    rng = np.random.default_rng(5)
    order = rng.permutation(len(y))
    tr, va, te = order[:60], order[60:90], order[90:]
    split = lambda i: zs.Split(x[i], y[i])
    rows = zs.few_shot(split(tr), split(va), split(te), 3, ks=(1, 4), seeds=(0, 1, 2), Cs=(0.01, 1.0))
    assert [r["k"] for r in rows] == [1, 4]
    for r in rows:
        assert r["C"] in (0.01, 1.0) and len(r["per_seed"]) == 3
        assert r["accuracy"] == pytest.approx(np.mean([s["accuracy"] for s in r["per_seed"]]))
    assert rows[1]["accuracy"] > 0.9


def test_label_texts():
    classes = ["art", "men-women", "songs-poems"]
    assert zs.label_texts(classes, "name") == ["art", "men and women", "songs poems"]
    assert zs.label_texts(classes, "description")[0] == zs.FORTUNE_TOPIC_DESCRIPTIONS["art"]
    with pytest.raises(DataError, match="no label description"):
        zs.label_texts(["nope"], "description")
    with pytest.raises(ConfigError):
        zs.label_texts(classes, "other")


def test_descriptions_cover_the_fortune_topics():
    from genlab.data.corpora import TopicData, topic_dataset

    try:
        classes = topic_dataset(TopicData()).classes
    except DataError:
        pytest.skip("Debian fortunes not installed")
    assert set(classes) <= set(zs.FORTUNE_TOPIC_DESCRIPTIONS)
