"""Classification from frozen sentence embeddings: zero-shot against label descriptions, and a
few-shot logistic probe.

Axes: N texts, K classes, C embedding dims. Embeddings are L2-normalised rows
(:func:`genlab.eval.embeddings.embed_texts`), so dot products are cosines.

- **Zero-shot** (:func:`zero_shot_predict`): each text goes to the class whose label description
  is nearest, ``argmax_k cos(e_text, e_label_k)``, with no training example at all (the
  embedding-similarity form of zero-shot classification; Yin, Hay & Roth 2019, arXiv:1909.00161,
  survey the alternatives).
- **Few-shot** (:func:`few_shot`): k training texts per class (a seeded draw), a multinomial
  logistic regression on their frozen embeddings (:func:`fit_logistic`), for several k and seeds;
  the L2 strength is chosen on the validation split.

:func:`fit_logistic` minimises scikit-learn's ``LogisticRegression`` objective (multinomial,
intercept not penalised)::

    L(W, b) = sum_i CE(softmax(W x_i + b), y_i) + ||W||^2 / (2 C)

with L-BFGS in float64 (scipy; the tests check it against scikit-learn's solution). Macro-F1 is the
unweighted mean over classes of 2 TP / (2 TP + FP + FN), 0 for a class never predicted nor present.

:data:`FORTUNE_TOPIC_DESCRIPTIONS` are hand-written one-line descriptions of the 17 fortune topics
(:mod:`genlab.data.text_tasks`), written from the topic names and the Debian ``fortunes`` package,
not tuned on any split.

Tier 3: numpy, scipy and torch; the embeddings come in as arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import optimize

from genlab.core.errors import ConfigError, DataError

#: Hand-written label descriptions of the fortune topics (data, not tuned).
FORTUNE_TOPIC_DESCRIPTIONS: dict[str, str] = {
    "art": "a remark about art, artists, painting, music, writers and critics",
    "computers": "a joke or quotation about computers, programming, software and programmers",
    "cookie": "a witty quotation or saying from a fortune cookie, on any subject",
    "definitions": "a humorous dictionary definition of a word",
    "fortunes": "a fortune-teller's prediction about your future, your day or your luck",
    "knghtbrd": "a quotation from an IRC chat among Debian developers about Linux, packages and bugs",
    "linux": "a quotation about Linux, Unix, free software and hackers",
    "men-women": "a remark about men and women, love, sex and marriage",
    "miscellaneous": "a miscellaneous quotation about everyday life",
    "people": "an anecdote or quotation about a famous person",
    "platitudes": "a twisted proverb or a platitude",
    "politics": "a quotation about politics, government, laws, taxes and politicians",
    "science": "a remark about science, mathematics, physics and scientists",
    "songs-poems": "a poem, a song lyric or a piece of verse",
    "wisdom": "a wise saying from a philosopher or a writer",
    "work": "a joke about work, jobs, bosses, offices and meetings",
    "zippy": "a surreal non sequitur by Zippy the Pinhead, the comic-strip character",
}


def label_texts(classes: Sequence[str], style: str) -> list[str]:
    """The text embedded for each class: ``name`` (the topic name, hyphens as spaces) or
    ``description`` (:data:`FORTUNE_TOPIC_DESCRIPTIONS`)."""
    if style == "name":
        return [c.replace("-", " and ") if c == "men-women" else c.replace("-", " ") for c in classes]
    if style == "description":
        missing = [c for c in classes if c not in FORTUNE_TOPIC_DESCRIPTIONS]
        if missing:
            raise DataError(f"no label description for the classes {missing}: use style 'name'")
        return [FORTUNE_TOPIC_DESCRIPTIONS[c] for c in classes]
    raise ConfigError(f"label style must be 'name' or 'description', got {style!r}")


def zero_shot_predict(texts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """texts (N, C), labels (K, C) embeddings -> (N,) the class of the most cosine-similar label."""
    t = torch.as_tensor(np.asarray(texts), dtype=torch.float64)
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    if t.dim() != 2 or lab.dim() != 2 or t.shape[1] != lab.shape[1]:
        raise ValueError(f"need texts (N, C) and labels (K, C), got {tuple(t.shape)} and {tuple(lab.shape)}")
    sims = F.normalize(t, dim=-1) @ F.normalize(lab, dim=-1).T  # (N, K)
    return sims.argmax(1).numpy()


def macro_f1(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """The unweighted mean over the classes of F1 = 2 TP / (2 TP + FP + FN)."""
    pred, target = np.asarray(pred), np.asarray(target)
    f1 = []
    for k in range(num_classes):
        tp = np.sum((pred == k) & (target == k))
        fp = np.sum((pred == k) & (target != k))
        fn = np.sum((pred != k) & (target == k))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1))


def scores(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """{"accuracy", "macro_f1"} of predictions against targets."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"need predictions and targets of one non-empty shape, got {pred.shape} and {target.shape}")
    return {"accuracy": float((pred == target).mean()), "macro_f1": macro_f1(pred, target, num_classes)}


def k_per_class(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k items of each class (a seeded draw without replacement), sorted."""
    labels = np.asarray(labels)
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            raise DataError(f"class {c} has {len(members)} training items, fewer than k={k}")
        picked.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picked))


@dataclass
class LogisticModel:
    weight: np.ndarray  # (K, C)
    bias: np.ndarray  # (K,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias).argmax(1)


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, C: float = 1.0, max_iter: int = 1000) -> LogisticModel:
    """Multinomial logistic regression: argmin sum_i CE + ||W||^2 / (2 C) (module docstring), by
    L-BFGS (scipy) on the exact gradient

        dL/dW = (P - Y)^T X + W / C,    dL/db = sum_i (P_i - Y_i)

    with P (N, K) the softmax probabilities and Y (N, K) the one-hot targets."""
    if C <= 0:
        raise ConfigError(f"C must be positive, got {C}")
    X = np.asarray(x, dtype=np.float64)  # (N, D)
    N, D = X.shape
    Y = np.zeros((N, num_classes))
    Y[np.arange(N), np.asarray(y, dtype=np.int64)] = 1.0  # (N, K)

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: num_classes * D].reshape(num_classes, D), theta[num_classes * D :]
        z = X @ W.T + b  # (N, K)
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        R = np.exp(logp) - Y  # (N, K): P - Y
        loss = -(Y * logp).sum() + (W * W).sum() / (2.0 * C)
        return loss, np.concatenate([(R.T @ X + W / C).ravel(), R.sum(0)])

    theta0 = np.zeros(num_classes * (D + 1))
    res = optimize.minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "gtol": 1e-8, "ftol": 1e-14})  # fmt: skip
    return LogisticModel(res.x[: num_classes * D].reshape(num_classes, D).copy(), res.x[num_classes * D :].copy())


@dataclass
class Split:
    x: np.ndarray  # (N, C) embeddings
    y: np.ndarray  # (N,) labels


def few_shot(
    train: Split,
    val: Split,
    test: Split,
    num_classes: int,
    ks: Sequence[int] = (1, 4, 16),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    Cs: Sequence[float] = (0.1, 1.0, 10.0),
) -> list[dict]:
    """For each k: a logistic probe on k training items per class for each seed and each C; the C
    with the best mean validation accuracy is kept, and its test accuracy and macro-F1 reported
    (mean and standard deviation over the seeds, and each seed's)."""
    rows = []
    for k in ks:
        fits = {
            C: [(s, fit_logistic(train.x[idx], train.y[idx], num_classes, C))
                for s in seeds for idx in [k_per_class(train.y, k, s)]]
            for C in Cs
        }  # fmt: skip
        val_acc = {C: np.mean([scores(m.predict(val.x), val.y, num_classes)["accuracy"] for _, m in fs])
                   for C, fs in fits.items()}  # fmt: skip
        best = max(Cs, key=lambda C: (val_acc[C], -C))
        per_seed = [scores(m.predict(test.x), test.y, num_classes) for _, m in fits[best]]
        acc = np.array([r["accuracy"] for r in per_seed])
        f1 = np.array([r["macro_f1"] for r in per_seed])
        rows.append({"k": k, "C": best, "val_accuracy": float(val_acc[best]), "accuracy": float(acc.mean()),
                     "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, "macro_f1": float(f1.mean()),
                     "macro_f1_std": float(f1.std(ddof=1)) if len(f1) > 1 else 0.0, "seeds": list(seeds),
                     "per_seed": per_seed})  # fmt: skip
    return rows
