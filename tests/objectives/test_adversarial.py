import functools
import math

import pytest
import torch
import torch.nn as nn

from genlab.objectives.adversarial import (
    KINDS,
    discriminator_loss,
    discriminator_step,
    generator_loss,
    generator_step,
    gradient_penalty,
)

REAL = [2.0, -1.0, 0.5]
FAKE = [0.5, -3.0, 1.5]


def softplus(a):
    return math.log1p(math.exp(a))


def mean(xs):
    return sum(xs) / len(xs)


def t(xs):
    return torch.tensor(xs)


@pytest.mark.parametrize(
    "kind, d_expected, g_expected",
    [
        (
            "nonsaturating",
            mean([softplus(-r) for r in REAL]) + mean([softplus(f) for f in FAKE]),
            mean([softplus(-f) for f in FAKE]),
        ),
        ("hinge", mean([max(0, 1 - r) for r in REAL]) + mean([max(0, 1 + f) for f in FAKE]), -mean(FAKE)),
        ("wgan-gp", mean(FAKE) - mean(REAL), -mean(FAKE)),
    ],
)
def test_losses_match_their_formulas_on_hand_made_logits(kind, d_expected, g_expected):
    assert discriminator_loss(kind, t(REAL), t(FAKE)).item() == pytest.approx(d_expected, rel=1e-6)
    assert generator_loss(kind, t(FAKE)).item() == pytest.approx(g_expected, rel=1e-6)


def test_one_sided_label_smoothing_targets_real_images_only():
    s = 0.1
    expected = mean([(1 - s) * softplus(-r) + s * softplus(r) for r in REAL]) + mean([softplus(f) for f in FAKE])
    assert discriminator_loss("nonsaturating", t(REAL), t(FAKE), smoothing=s).item() == pytest.approx(expected, 1e-6)
    with pytest.raises(ValueError, match="non-saturating"):
        discriminator_loss("hinge", t(REAL), t(FAKE), smoothing=s)
    with pytest.raises(ValueError, match="unknown adversarial loss 'lsgan'"):
        generator_loss("lsgan", t(FAKE))
    assert set(KINDS) == {"nonsaturating", "hinge", "wgan-gp"}


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def test_gradient_penalty_is_zero_for_unit_gradients_and_positive_otherwise():
    real, fake = torch.rand(6, 1, 4, 4), torch.rand(6, 1, 4, 4)
    w = torch.randn(16)
    unit = LinearCritic(w / w.norm())
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    steep = LinearCritic(3 * w / w.norm())
    gp = gradient_penalty(steep, real, fake)
    assert gp.item() == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2
    gp.backward()  # the penalty trains D: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(steep.w.grad, 4 * w / w.norm())
    bent = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    assert gradient_penalty(bent, real, fake).item() > 0


class TinyG(nn.Module):
    def __init__(self, z=3, k=0):
        super().__init__()
        self.fc = nn.Linear(z + k, 16)
        self.k = k

    def forward(self, z, y=None):
        if self.k:
            z = torch.cat([z, nn.functional.one_hot(y, self.k).float()], 1)
        return torch.sigmoid(self.fc(z)).view(-1, 1, 4, 4)


class TinyD(nn.Module):
    def __init__(self, k=0):
        super().__init__()
        self.fc = nn.Linear(16, 1)
        self.embed = nn.Embedding(k, 16) if k else None
        self.seen_labels = []

    def forward(self, x, y=None):
        self.seen_labels.append(y)
        h = x.flatten(1)
        out = self.fc(h).squeeze(-1)
        return out if y is None else out + (self.embed(y) * h).sum(-1)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_discriminator_step_trains_d_only_and_reports_logits(kind):
    models = {"generator": TinyG(), "discriminator": TinyD()}
    batch = (torch.rand(8, 1, 4, 4), torch.zeros(8, dtype=torch.long))
    step = functools.partial(discriminator_step, kind=kind, latent_dim=3, gp_weight=10.0)
    loss, metrics = step(models, batch)
    loss.backward()
    assert models["generator"].fc.weight.grad is None  # fakes are detached
    assert models["discriminator"].fc.weight.grad is not None
    assert {"d_real", "d_fake", "d_acc"} <= set(metrics) and 0 <= metrics["d_acc"] <= 1
    assert ("gp" in metrics) == (kind == "wgan-gp")
    assert all(y is None for y in models["discriminator"].seen_labels)  # unconditional: no labels
    real = models["discriminator"](batch[0])
    assert metrics["d_real"] == pytest.approx(real.mean().item(), rel=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generator_step_gives_g_gradients_and_conditions_on_the_batch_labels(kind):
    models = {"generator": TinyG(k=3), "discriminator": TinyD(k=3)}
    y = torch.tensor([0, 1, 2, 1])
    loss, metrics = generator_step(models, (torch.rand(4, 1, 4, 4), y), kind=kind, latent_dim=3, conditional=True)
    loss.backward()
    assert models["generator"].fc.weight.grad.abs().sum() > 0
    assert torch.equal(models["discriminator"].seen_labels[-1], y)
    assert math.isfinite(metrics["g_d_fake"])
    d_loss, _ = discriminator_step(models, (torch.rand(4, 1, 4, 4), y), kind, 3, conditional=True)
    assert torch.isfinite(d_loss)
