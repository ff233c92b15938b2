"""Anomaly scores of a likelihood model, and their AUROC.

A density model trained on "normal" data flags inputs of low likelihood. Negative ELBO and the
IWAE NLL are such scores, but likelihoods of images are dominated by how much there is to
encode: a sparse, simple image (a sandal, a trouser) gets a high likelihood under any model,
seen or not (Nalisnick et al. 2019, arXiv:1810.09136). The input-complexity correction of
Serrà et al. 2020 (arXiv:1909.11480) subtracts a generic compressor's code length L(x):

    S(x) = -log p(x) - L(x)            (both in nats)

so that what remains is how much worse the model does than a model that knows nothing about
the data. genlab's L(x) is the size of the image as a PNG (zlib at level 9) in bits, times ln 2.

A genlab VAE's Bernoulli likelihood on intensities in [0, 1] adds a bias of its own: the cross
entropy of a grey pixel x against any prediction p is at least its binary entropy H(x), reached
at p = x. The image's floor sum_i H(x_i) depends on x alone, so

    excess(x) = -log p(x) - sum_i H(x_i)          (nats, >= 0 for the reconstruction term)

keeps only what the model fails to explain. The KL term of the ELBO alone (the rate: how many
nats the encoder needs to place x in the latent space) is a third score.

The likelihood ratio of Ren et al. 2019 (arXiv:1906.02845) learns the background instead of
assuming one: a second model of the same kind, trained on the same images with a fraction of
their pixels replaced by noise (:func:`genlab.data.images.perturb`), captures the low-level
statistics (how much ink, how smooth) but less of the shapes, and

    LR(x) = -log p(x) + log p_background(x)

cancels what both models share. ``genlab eval RUN --background BG_RUN`` reports it.

The prior is a second lever. N(0, I) is dense wherever the encoder may put a code, also between
the clusters of the training classes, where an unseen class tends to land. The aggregate posterior
of the training images, (1/N) sum_n q(z | x_n), is dense only where training codes are; the IWAE
NLL with it as the prior (:func:`genlab.objectives.elbo.aggregate_posterior_log_prob`) charges a
code between clusters the nats that N(0, I) does not. ``genlab eval`` reports it with and without
the Bernoulli floor.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch


def png_code_length(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) images -> their PNG sizes in nats (N,) float64 (bits x ln 2, headers included:
    the header is the same for every image of one size, so it shifts all scores equally)."""
    from PIL import Image

    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 (N, H, W) images, got {images.dtype} {images.shape}")
    sizes = np.empty(len(images), dtype=np.float64)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=9)
        sizes[i] = 8 * buf.tell() * math.log(2)
    return sizes


def auroc(scores: np.ndarray | torch.Tensor, is_anomaly: np.ndarray | torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) for the 0/1 labels ``is_anomaly``:
    the probability that a random anomaly scores above a random normal input (ties count one half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_anomaly).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be two vectors of one length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUROC needs both anomalies and normal inputs")
    from scipy.stats import rankdata

    ranks = rankdata(s)  # average ranks: ties count one half
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pixel_entropy(images: torch.Tensor) -> torch.Tensor:
    """sum_i H(x_i) in nats per image for intensities x in [0, 1], (N, ...) -> (N,): the lowest
    Bernoulli cross entropy any model can reach on that image (H(0) = H(1) = 0)."""
    x = images.double().flatten(1)
    return -(torch.special.xlogy(x, x) + torch.special.xlogy(1 - x, 1 - x)).sum(1)
