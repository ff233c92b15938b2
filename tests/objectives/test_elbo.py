import math

import pytest
import torch

from genlab.data.images import load_digits, to_float
from genlab.models.vae import VAE, VAEConfig, VAEOutput
from genlab.objectives.elbo import (
    aggregate_posterior_log_prob,
    elbo_terms,
    gaussian_kl,
    iwae_nll,
    kl_warmup,
    negative_elbo,
    reconstruction_nll,
    vae_loss,
)

MU = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.3, -0.7]])
LOGVAR = torch.tensor([[0.0, -1.0, 0.8], [-2.0, 0.5, 0.1]])


def test_kl_closed_form_matches_monte_carlo_and_torch_distributions():
    kl = gaussian_kl(MU, LOGVAR)
    assert kl.shape == (2,)
    q = torch.distributions.Normal(MU, torch.exp(0.5 * LOGVAR))
    p = torch.distributions.Normal(torch.zeros_like(MU), torch.ones_like(MU))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(-1))
    z = q.sample((200_000,))  # (S, 2, 3)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)  # E_q[log q(z) - log p(z)]
    torch.testing.assert_close(mc, kl, rtol=0.02, atol=0.02)
    torch.testing.assert_close(gaussian_kl(torch.zeros(4, 5), torch.zeros(4, 5)), torch.zeros(4))


def test_bernoulli_nll_is_binary_cross_entropy_summed_over_pixels():
    x = torch.tensor([0.0, 0.5, 1.0, 0.2]).view(1, 1, 2, 2)
    logits = torch.tensor([-1.0, 0.3, 2.0, 0.0]).view(1, 1, 2, 2)
    p = torch.sigmoid(logits)
    explicit = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    torch.testing.assert_close(reconstruction_nll(logits, x, "bernoulli"), explicit.view(1))


def test_gaussian_nll_is_the_log_density_with_its_constant():
    x, means = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    explicit = -torch.distributions.Normal(means, 1.0).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(means, x, "gaussian"), explicit)
    explicit = -torch.distributions.Normal(means, 0.1).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll(means, x, "gaussian", sigma=0.1), explicit)
    torch.testing.assert_close(reconstruction_nll(x, x, "gaussian"), torch.full((3,), 16 / 2 * math.log(2 * math.pi)))
    with pytest.raises(ValueError, match="likelihood"):
        reconstruction_nll(means, x, "poisson")


def test_elbo_terms_per_example():
    out = VAEOutput(recon=torch.zeros(2, 1, 2, 2), mu=MU, logvar=LOGVAR, z=MU)
    recon, kl = elbo_terms(out, torch.ones(2, 1, 2, 2), "bernoulli")
    torch.testing.assert_close(recon, torch.full((2,), 4 * math.log(2)))
    torch.testing.assert_close(kl, gaussian_kl(MU, LOGVAR))


def _tiny(n_classes: int = 0) -> VAE:
    return VAE(VAEConfig(image_size=8, widths=[8, 16], hidden=32, latent_dim=4, n_classes=n_classes))


def test_beta_and_kl_weight_scale_the_kl_term():
    model, x, y = _tiny(), torch.rand(5, 1, 8, 8), torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        model.to_mu.bias.fill_(2.0)  # a KL of about 8 nats, comparable with the reconstruction term
    torch.manual_seed(1)
    loss1, m1 = vae_loss(model, (x, y))
    torch.manual_seed(1)
    loss2, m2 = vae_loss(model, (x, y), beta=4.0, kl_weight=0.25)
    torch.manual_seed(1)
    loss3, m3 = vae_loss(model, (x, y), beta=3.0, kl_weight=0.5)
    assert m1 == m2 == m3 and m1["kl"] > 5
    assert loss1.item() == pytest.approx(m1["recon"] + m1["kl"], rel=1e-5)
    assert loss2.item() == pytest.approx(loss1.item(), rel=1e-5)
    assert loss3.item() - loss1.item() == pytest.approx(0.5 * m1["kl"], rel=1e-4)
    torch.manual_seed(1)
    loss0, _ = vae_loss(model, (x, y), kl_weight=kl_warmup(0, 100))
    assert loss0.item() == pytest.approx(m1["recon"], rel=1e-5)


def test_labels_reach_a_conditional_model_only():
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    loss, _ = vae_loss(_tiny(n_classes=10), (x, y))  # a conditional model gets y
    loss.backward()
    loss, _ = vae_loss(_tiny(), (x, y))  # an unconditional one does not (it would refuse it)
    assert torch.isfinite(loss)
    assert negative_elbo(_tiny(n_classes=10), x, y).shape == (4,)
    assert iwae_nll(_tiny(n_classes=10), x, y, k=7, max_batch=8).shape == (4,)


def test_kl_warmup_is_linear_and_clamped():
    assert [kl_warmup(s, 100) for s in (0, 25, 100, 500)] == [0.0, 0.25, 1.0, 1.0]
    assert kl_warmup(0, 0) == 1.0


@pytest.fixture(scope="module")
def trained():
    """A small conv VAE after 400 Adam steps on 512 digits, with its negative ELBO before and after."""
    torch.manual_seed(0)
    images, labels = load_digits("train")
    x, y = to_float(torch.from_numpy(images[:512])), torch.from_numpy(labels[:512].astype("int64"))
    model = VAE(VAEConfig(image_size=8, widths=[16, 32], hidden=128, latent_dim=8))
    before = negative_elbo(model, x).mean().item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        idx = torch.randint(0, len(x), (64,))
        loss, _ = vae_loss(model, (x[idx], y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[:256], before


def test_training_lowers_the_negative_elbo(trained):
    model, x, before = trained
    after = negative_elbo(model, x).mean().item()
    assert after < 0.7 * before  # about 42 -> 26 nats per image


def test_iwae_bound_is_tighter_than_the_elbo(trained):
    model, x, _ = trained
    torch.manual_seed(2)
    nelbo = torch.stack([negative_elbo(model, x) for _ in range(4)]).mean(0)  # (B,), 4 samples of z
    iwae = iwae_nll(model, x, k=100, generator=torch.Generator().manual_seed(0), max_batch=4096)
    assert iwae.shape == (len(x),) and torch.isfinite(iwae).all()
    assert iwae.mean().item() <= nelbo.mean().item() + 0.05
    # one importance sample is the ELBO itself (a noisier estimate of it)
    iwae1 = iwae_nll(model, x, k=1, generator=torch.Generator().manual_seed(0))
    assert iwae1.mean().item() == pytest.approx(nelbo.mean().item(), abs=0.3)
    # the same generator gives the same estimate; chunks of one sample (256 images per decoder call) agree
    again = iwae_nll(model, x, k=100, generator=torch.Generator().manual_seed(0), max_batch=4096)
    torch.testing.assert_close(again, iwae)
    chunked = iwae_nll(model, x, k=100, generator=torch.Generator().manual_seed(1), max_batch=256)
    assert chunked.mean().item() == pytest.approx(iwae.mean().item(), abs=0.05)


def test_the_gaussian_sigma_reaches_the_elbo_and_the_iwae_estimate():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 8, 8)
    model = VAE(VAEConfig(image_size=8, widths=[8], hidden=16, latent_dim=3, likelihood="gaussian", sigma=0.1))
    unit = VAE(VAEConfig(image_size=8, widths=[8], hidden=16, latent_dim=3, likelihood="gaussian"))
    unit.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    out = model(x)
    explicit = -torch.distributions.Normal(out.recon, 0.1).log_prob(x).flatten(1).sum(1)
    explicit = explicit + gaussian_kl(out.mu, out.logvar)
    torch.manual_seed(1)
    torch.testing.assert_close(negative_elbo(model, x), explicit)
    # one importance sample, the same z for both: the estimates differ by the two recon terms
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(3))[0]
    means = model.decode(z)
    gap = reconstruction_nll(means, x, "gaussian", 0.1) - reconstruction_nll(means, x, "gaussian")
    with torch.no_grad():
        iwae_s, iwae_1 = (iwae_nll(m, x, k=1, generator=torch.Generator().manual_seed(3)) for m in (model, unit))
    torch.testing.assert_close(iwae_s - iwae_1, gap.detach(), rtol=1e-4, atol=1e-3)


def test_aggregate_posterior_is_the_mixture_of_the_posteriors():
    torch.manual_seed(0)
    mu, logvar, z = torch.randn(7, 3), 0.5 * torch.randn(7, 3), 2 * torch.randn(11, 3)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(7)),
        torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1),
    )
    got = aggregate_posterior_log_prob(z, mu, logvar, chunk=4)
    assert got.dtype == torch.float64 and got.shape == (11,)
    torch.testing.assert_close(got, mixture.log_prob(z).double(), rtol=1e-5, atol=1e-4)


def test_iwae_with_an_aggregate_prior_swaps_only_log_p_z(trained):
    model, x, _ = trained
    x = x[:32]
    standard = iwae_nll(model, x, k=1, generator=torch.Generator().manual_seed(4))
    # a one-component "aggregate" at N(0, I) is the standard prior
    same = iwae_nll(
        model, x, k=1, generator=torch.Generator().manual_seed(4), prior=(torch.zeros(1, 8), torch.zeros(1, 8))
    )
    torch.testing.assert_close(same, standard, rtol=1e-5, atol=1e-4)
    # with one sample, the estimates differ by log N(z; 0, I) - log q_agg(z) at the same z
    mu, logvar = model.encode(x)
    codes = model.encode(x[:16])
    z = mu + (0.5 * logvar).exp() * torch.randn(1, 32, 8, generator=torch.Generator().manual_seed(4))[0]
    gap = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1).double() - aggregate_posterior_log_prob(z, *codes)
    got = iwae_nll(model, x, k=1, generator=torch.Generator().manual_seed(4), prior=codes)
    torch.testing.assert_close((got - standard).double(), gap, rtol=1e-4, atol=1e-3)
