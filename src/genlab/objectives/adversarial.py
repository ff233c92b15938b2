"""Adversarial losses: non-saturating, hinge and WGAN-GP, as pure functions of D's logits.

Notation: D(x) is the discriminator's logit for a real image x, D(G(z)) for a generated one,
sigma the logistic sigmoid, softplus(a) = log(1 + e^a) = -log sigma(-a). Every loss is a mean
over the batch.

Non-saturating GAN (Goodfellow et al. 2014, arXiv:1406.2661). D maximises
log sigma(D(x)) + log(1 - sigma(D(G(z)))); G maximises log sigma(D(G(z))) instead of
minimising log(1 - sigma(D(G(z)))), whose gradient vanishes while D wins easily::

    L_D = softplus(-D(x)) + softplus(D(G(z)))
    L_G = softplus(-D(G(z)))

One-sided label smoothing (Salimans et al. 2016, arXiv:1606.03498) gives real images the
target t = 1 - smoothing (0.9 for 0.1) and fakes still 0:
L_D = t softplus(-D(x)) + (1 - t) softplus(D(x)) + softplus(D(G(z))).

Hinge (Lim & Ye 2017, arXiv:1705.02894; Miyato et al. 2018, arXiv:1802.05957)::

    L_D = relu(1 - D(x)) + relu(1 + D(G(z)))
    L_G = -D(G(z))

WGAN-GP (Gulrajani et al. 2017, arXiv:1704.00028): D is a critic estimating the Wasserstein-1
distance; the gradient penalty keeps it near 1-Lipschitz on interpolates
x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample::

    L_D = D(G(z)) - D(x) + lambda (||grad_{x_hat} D(x_hat)||_2 - 1)^2
    L_G = -D(G(z))

:func:`discriminator_step` and :func:`generator_step` are engine-ready phase losses
``fn(models, batch)`` once ``kind`` and the rest are bound with ``functools.partial``;
``models`` = {"generator": G, "discriminator": D}, ``batch`` = (images (B, C, H, W) in [0, 1],
labels (B,)); the labels reach G and D only when ``conditional``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


# --- losses of logits ------------------------------------------------------------------


def d_loss_nonsaturating(real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """t softplus(-D(x)) + (1 - t) softplus(D(x)) + softplus(D(G(z))), t = 1 - smoothing."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing={smoothing} must be in [0, 1) (0.1 makes the real target 0.9)")
    real, fake = real.float(), fake.float()
    target = torch.full_like(real, 1.0 - smoothing)
    return F.binary_cross_entropy_with_logits(real, target) + F.softplus(fake).mean()


def g_loss_nonsaturating(fake: Tensor) -> Tensor:
    """softplus(-D(G(z))) = -log sigma(D(G(z)))."""
    return F.softplus(-fake.float()).mean()


def d_loss_hinge(real: Tensor, fake: Tensor) -> Tensor:
    """relu(1 - D(x)) + relu(1 + D(G(z)))."""
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


def d_loss_wasserstein(real: Tensor, fake: Tensor) -> Tensor:
    """D(G(z)) - D(x): the critic's part of the WGAN loss (add the gradient penalty for WGAN-GP)."""
    return fake.float().mean() - real.float().mean()


def g_loss_critic(fake: Tensor) -> Tensor:
    """-D(G(z)): the generator loss of both hinge and WGAN."""
    return -fake.float().mean()


def _no_smoothing(fn: Callable[[Tensor, Tensor], Tensor], kind: str) -> Callable[[Tensor, Tensor, float], Tensor]:
    def loss(real: Tensor, fake: Tensor, smoothing: float) -> Tensor:
        if smoothing:
            raise ValueError(f"label smoothing applies to the non-saturating loss only, not '{kind}'")
        return fn(real, fake)

    return loss


#: kind -> (D loss of (real logits, fake logits, smoothing), G loss of fake logits).
KINDS: dict[str, tuple[Callable[[Tensor, Tensor, float], Tensor], Callable[[Tensor], Tensor]]] = {
    "nonsaturating": (d_loss_nonsaturating, g_loss_nonsaturating),
    "hinge": (_no_smoothing(d_loss_hinge, "hinge"), g_loss_critic),
    "wgan-gp": (_no_smoothing(d_loss_wasserstein, "wgan-gp"), g_loss_critic),
}


def _kind(kind: str) -> tuple[Callable[[Tensor, Tensor, float], Tensor], Callable[[Tensor], Tensor]]:
    if kind not in KINDS:
        raise ValueError(f"unknown adversarial loss '{kind}'; choose from {sorted(KINDS)}")
    return KINDS[kind]


def discriminator_loss(kind: str, real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """D's loss of the logits (B,) on real and generated images (WGAN-GP: without the penalty)."""
    return _kind(kind)[0](real, fake, smoothing)


def generator_loss(kind: str, fake: Tensor) -> Tensor:
    """G's loss of D's logits (B,) on generated images."""
    return _kind(kind)[1](fake)


# --- gradient penalty ------------------------------------------------------------------


def gradient_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """mean over the batch of (||grad_{x_hat} D(x_hat)||_2 - 1)^2, x_hat = eps x + (1 - eps) x_fake.

    eps ~ U[0, 1], one per sample (drawn with ``generator`` if given). The graph is kept
    (``create_graph``) so the penalty trains D's weights. ``fake`` is detached.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} images differ in shape")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, device=real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # (B, C, H, W)
    out = discriminator(x_hat) if y is None else discriminator(x_hat, y)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norm = (grad.float().flatten(1).pow(2).sum(1) + 1e-12).sqrt()  # (B,); +1e-12: finite gradient at 0
    return (norm - 1.0).pow(2).mean()


# --- engine phases ---------------------------------------------------------------------


def _d(discriminator: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    return discriminator(x) if y is None else discriminator(x, y)


def _g(generator: nn.Module, z: Tensor, y: Tensor | None) -> Tensor:
    return generator(z) if y is None else generator(z, y)


def discriminator_step(
    models: dict[str, nn.Module],
    batch: tuple[Tensor, Tensor],
    kind: str = "nonsaturating",
    latent_dim: int = 64,
    smoothing: float = 0.0,
    gp_weight: float = 10.0,
    conditional: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """D's phase: real images against G(z), z ~ N(0, I) (G run without gradients).

    Metrics: d_real and d_fake (mean logits), d_acc (share of real logits > 0 and fake
    logits < 0) and, for WGAN-GP, gp (the penalty before its weight).
    """
    _kind(kind)
    x, labels = batch
    y = labels if conditional else None
    G, D = models["generator"], models["discriminator"]
    z = torch.randn(x.shape[0], latent_dim, device=x.device)
    with torch.no_grad():
        fake = _g(G, z, y)  # (B, C, H, W), detached
    real_logits, fake_logits = _d(D, x, y), _d(D, fake, y)  # (B,), (B,)
    loss = discriminator_loss(kind, real_logits, fake_logits, smoothing)
    metrics = {
        "d_real": real_logits.detach().float().mean().item(),
        "d_fake": fake_logits.detach().float().mean().item(),
        "d_acc": 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).item(),
    }
    if kind == "wgan-gp":
        gp = gradient_penalty(D, x, fake, y)
        loss = loss + gp_weight * gp
        metrics["gp"] = gp.item()
    return loss, metrics


def generator_step(
    models: dict[str, nn.Module],
    batch: tuple[Tensor, Tensor],
    kind: str = "nonsaturating",
    latent_dim: int = 64,
    conditional: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """G's phase: L_G of D(G(z)); a conditional G draws the batch's labels. Metric g_d_fake = mean D(G(z))."""
    _kind(kind)
    x, labels = batch
    y = labels if conditional else None
    G, D = models["generator"], models["discriminator"]
    z = torch.randn(x.shape[0], latent_dim, device=x.device)
    fake_logits = _d(D, _g(G, z, y), y)  # (B,)
    return generator_loss(kind, fake_logits), {"g_d_fake": fake_logits.detach().float().mean().item()}
