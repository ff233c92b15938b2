"""The evidence lower bound (ELBO) of a VAE, its beta-weighted loss, and the importance-weighted bound.

Axes: B batch, D = C * H * W pixels, L latent dim, S importance samples.

For an encoder q(z | x) = N(mu, diag(sigma^2)), prior p(z) = N(0, I) and decoder p(x | z)
(Kingma & Welling 2013, arXiv:1312.6114)::

    log p(x) >= ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))

The loss is the negative ELBO in nats per image, the reconstruction term estimated with the one
reparameterised sample z = mu + sigma * eps the model draws:

    recon(x) = -log p(x | z)
    L = (1/B) sum_b [ recon(x_b) + beta * w * KL(q(z | x_b) || p(z)) ]

beta is the beta-VAE weight (Higgins et al. 2017; beta = 1 is the VAE) and w the KL warm-up
weight, rising linearly from 0 to 1 (Bowman et al. 2016, arXiv:1511.06349) so the decoder learns
to use z before the KL pulls q onto the prior.

Reconstruction terms, summed over the D pixels, with l the decoder's logits and m its means::

    bernoulli:  -log p(x | z) = -sum_d [x_d log s(l_d) + (1 - x_d) log(1 - s(l_d))]    (s = sigmoid)
                (binary cross-entropy with logits; intensities x_d in [0, 1] are soft targets)
    gaussian:   -log p(x | z) = 1/2 sum_d ((x_d - m_d) / sigma)^2 + D log sigma + D/2 log(2 pi)

with sigma the decoder's fixed standard deviation (``sigma``, 1 by default). The constants are
included, so both are true negative log-densities in nats. sigma sets how many nats a squared
error costs against the KL term: with sigma = 1 a pixel error of 0.1 costs 0.005 nats, so the KL
term dominates the loss; sigma near the data's residual error (about 0.1 for Fashion-MNIST)
balances them (cf. Rybkin et al. 2021, arXiv:2006.13202, who learn sigma).

KL of a diagonal Gaussian from the standard normal, in closed form::

    KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum_l (1 + log sigma_l^2 - mu_l^2 - sigma_l^2)

Importance-weighted estimate (IWAE, Burda et al. 2015, arXiv:1509.00519), z_s ~ q(z | x)::

    log p(x) ~= log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s | x)
             = logsumexp_s [log p(x | z_s) + log p(z_s) - log q(z_s | x)] - log S

a lower bound on log p(x) that is at least the ELBO in expectation and tightens as S grows; its
negative estimates the model's NLL, tighter than the negative ELBO.

The prior p(z) of that estimate can be swapped for the aggregate posterior of N training images,

    q(z) = (1/N) sum_n q(z | x_n)        (a mixture of N diagonal Gaussians)

the prior that maximises the training ELBO for a fixed encoder and decoder (Hoffman & Johnson
2016, "ELBO surgery"; Tomczak & Welling 2018, arXiv:1705.07120, whose VampPrior learns a small
mixture of this kind). The decoder with this prior is a generative model of its own; its NLL
flags a latent code that falls between the training codes even where N(0, I) is still dense.

Models are passed in (duck-typed): ``model(x, y)`` returns an output with ``recon``, ``mu``,
``logvar``; ``model.encode(x, y)``, ``model.decode(z, y)``; ``model.config.likelihood``,
``model.config.sigma`` (gaussian) and ``model.config.n_classes`` (> 0: conditional, labels are passed).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def reconstruction_nll(params: torch.Tensor, x: torch.Tensor, likelihood: str, sigma: float = 1.0) -> torch.Tensor:
    """-log p(x | z) per example, (B,) nats: params (B, C, H, W) logits or means, x (B, C, H, W) in [0, 1];
    ``sigma`` the standard deviation of the gaussian likelihood."""
    params, x = params.float().flatten(1), x.float().flatten(1)  # (B, D)
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(1)
    if likelihood == "gaussian":
        D = x.shape[1]
        return 0.5 * ((x - params) / sigma).pow(2).sum(1) + D * math.log(sigma) + 0.5 * D * LOG_2PI
    raise ValueError(f"likelihood='{likelihood}' is not one of ['bernoulli', 'gaussian']")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example, (B,) nats, in closed form."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def elbo_terms(out: Any, x: torch.Tensor, likelihood: str, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(recon NLL (B,), KL (B,)) of a model output with ``recon``, ``mu``, ``logvar``; -ELBO = their sum."""
    return reconstruction_nll(out.recon, x, likelihood, sigma), gaussian_kl(out.mu, out.logvar)


def model_elbo_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple:
    """:func:`elbo_terms` of ``model(x, y)`` under the model's own likelihood (labels only if conditional)."""
    return elbo_terms(model(x, _labels(model, y)), x, model.config.likelihood, _sigma(model))


def _sigma(model: nn.Module) -> float:
    return getattr(model.config, "sigma", 1.0)


def _labels(model: nn.Module, y: torch.Tensor | None) -> torch.Tensor | None:
    """The labels if the model is conditional, else None."""
    return y if getattr(model.config, "n_classes", 0) > 0 else None


def vae_loss(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], beta: float = 1.0, kl_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """batch = (x (B, C, H, W) in [0, 1], y (B,)) -> (mean of recon + beta * kl_weight * KL, {"recon", "kl"}).

    The metrics are batch means in nats per image. For KL warm-up, pass
    ``kl_weight=kl_warmup(trainer.step, warmup_steps)`` from the phase's closure.
    """
    recon, kl = model_elbo_terms(model, *batch)
    recon, kl = recon.mean(), kl.mean()
    return recon + beta * kl_weight * kl, {"recon": recon.item(), "kl": kl.item()}


def aggregate_posterior_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 2048):
    """log q(z) = log (1/N) sum_n N(z; mu_n, exp(logvar_n)) for z (M, L), mu and logvar (N, L): (M,) float64.

    The squared distances come from two matrix products, (M, L) x (L, N), in chunks of ``chunk`` rows.
    """
    mu, logvar = mu.float(), logvar.float()
    inv_var = torch.exp(-logvar)  # (N, L)
    # log N(z; mu_n, var_n) = -1/2 sum_l [z^2 / var - 2 z mu / var + mu^2 / var + log var + log 2 pi]
    const = -0.5 * ((mu.pow(2) * inv_var).sum(1) + logvar.sum(1) + mu.shape[1] * LOG_2PI)  # (N,)
    out = []
    for zc in z.float().split(chunk):
        log_n = -0.5 * zc.pow(2) @ inv_var.T + zc @ (mu * inv_var).T + const  # (chunk, N)
        out.append(torch.logsumexp(log_n, dim=1).double() - math.log(len(mu)))
    return torch.cat(out)


def kl_warmup(step: int, warmup_steps: int) -> float:
    """KL weight rising linearly from 0 at step 0 to 1 at ``warmup_steps`` (1 throughout if warmup_steps <= 0)."""
    if warmup_steps <= 0:
        return 1.0
    return min(max(step / warmup_steps, 0.0), 1.0)


@torch.no_grad()
def negative_elbo(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """-ELBO per example, (B,) nats (one sample of z for the reconstruction term, the KL exact)."""
    recon, kl = model_elbo_terms(model, x, y)
    return recon + kl


def _tile(t: torch.Tensor, S: int) -> torch.Tensor:
    """(B, ...) -> (S * B, ...), copy s at rows s * B .. s * B + B - 1 (the order of z.flatten(0, 1))."""
    return t.repeat(S, *([1] * (t.dim() - 1)))


@torch.no_grad()
def importance_samples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int = 100,
    generator: torch.Generator | None = None,
    max_batch: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k samples z_s ~ q(z | x), (k, B, L), and log p(x | z_s) - log q(z_s | x), (k, B) float64: the
    importance log-weights short of log p(z_s), so that one set of decoder calls serves any prior
    (:func:`log_prior`). The decoder sees at most ``max_batch`` images at a time (chunks of samples)."""
    y = _labels(model, y)
    likelihood = model.config.likelihood
    mu, logvar = (t.float() for t in model.encode(x, y))  # (B, L)
    B, L = mu.shape
    std = torch.exp(0.5 * logvar)
    chunk = max(1, max_batch // B)  # samples per decoder call
    zs, partial = [], []
    for start in range(0, k, chunk):
        S = min(chunk, k - start)
        noise_device = generator.device if generator is not None else mu.device
        eps = torch.randn(S, B, L, generator=generator, device=noise_device).to(mu.device)  # (S, B, L)
        z = mu + std * eps  # (S, B, L)
        params = model.decode(z.flatten(0, 1), None if y is None else _tile(y, S))  # (S * B, C, H, W)
        log_px = -reconstruction_nll(params, _tile(x, S), likelihood, _sigma(model)).view(S, B)
        log_qz = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)  # (S, B) log N(z; mu, sigma^2)
        zs.append(z)
        partial.append(log_px.double() - log_qz.double())
    return torch.cat(zs), torch.cat(partial)


def log_prior(z: torch.Tensor, prior: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """log p(z) for z (..., L), float64 (...): N(0, I), or with ``prior`` = (mu (N, L), logvar (N, L)) of
    training images their aggregate posterior (:func:`aggregate_posterior_log_prob`)."""
    if prior is None:
        return -0.5 * (z.double().pow(2) + LOG_2PI).sum(-1)
    return aggregate_posterior_log_prob(z.flatten(0, -2), *prior).view(z.shape[:-1])


def nll_from_log_weights(log_w: torch.Tensor) -> torch.Tensor:
    """The IWAE estimate -(logsumexp_s log w_s - log k) of k log-weights (k, B) -> (B,); their mean
    over s, negated, is the k-sample estimate of the negative ELBO."""
    return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]))


@torch.no_grad()
def iwae_nll(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int = 100,
    generator: torch.Generator | None = None,
    max_batch: int = 4096,
    prior: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """-log p(x) estimated with k importance samples from q(z | x), (B,) nats (<= -ELBO in expectation);
    the log-weights and their logsumexp are kept in float64. ``prior``: (mu (N, L), logvar (N, L)) of
    training images, to use their aggregate posterior as p(z) instead of N(0, I)."""
    z, partial = importance_samples(model, x, y, k, generator, max_batch)
    return nll_from_log_weights(partial + log_prior(z, prior)).float()
