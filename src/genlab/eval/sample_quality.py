"""Sample quality: Fréchet distance between feature distributions, and an Inception-style score.

FID (Heusel et al. 2017, arXiv:1706.08500) fits a Gaussian to the features of real and of
generated images and measures

    d^2 = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

The published FID uses an ImageNet Inception-v3 network; none can be downloaded here, and
it would describe 28 x 28 grey clothing poorly anyway. genlab therefore computes the same
distance in the feature space of its own classifier trained on Fashion-MNIST and names it
plainly: **FID-FMNIST**. Its values are comparable with each other (same classifier), not with
published FID numbers.

The Inception Score (Salimans et al. 2016, arXiv:1606.03498) uses the classifier's class
probabilities p(y | x):  IS = exp( E_x KL(p(y | x) || p(y)) ),  high when each sample is
confidently one class and the classes are varied (at most the number of classes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import linalg


def feature_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and covariance (D, D), in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared Fréchet distance between N(mu1, cov1) and N(mu2, cov2)."""
    with warnings.catch_warnings():  # features with dead (always-zero) units give singular covariances
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov1 @ cov2)
        if not np.isfinite(covmean).all():  # nudge both covariances off singularity
            eps = 1e-6 * np.eye(len(cov1))
            covmean = linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = covmean.real  # numerical noise can leave tiny imaginary parts
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


@torch.no_grad()
def extract(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Apply a feature or probability function to images in batches -> (N, D) float tensor on the CPU."""
    return torch.cat([fn(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)])


def fid(features: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between the features of two image sets (N, C, H, W)."""
    return frechet_distance(*feature_stats(extract(features, real)), *feature_stats(extract(features, fake)))


def inception_score(probs: torch.Tensor | np.ndarray, eps: float = 1e-12) -> float:
    """exp(mean_x KL(p(y|x) || p(y))) for (N, K) class probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))
