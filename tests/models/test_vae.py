import pytest
import torch

from genlab.core.registry import preset, presets
from genlab.models import build_model, family_of
from genlab.models.vae import VAE, VAEConfig, spatial_sizes

VAE_PRESETS = [n for n in presets() if isinstance(preset(n), VAEConfig)]


def _labels(cfg: VAEConfig, n: int) -> torch.Tensor | None:
    return torch.arange(n) % cfg.n_classes if cfg.n_classes else None


def test_every_vae_preset_is_covered():
    assert {"vae-fashion", "vae-fashion-2d", "cvae-fashion", "vae-digits"} <= set(VAE_PRESETS)
    assert family_of(preset("cvae-fashion")) == "vae"


@pytest.mark.parametrize(
    "image_size, widths, sides",
    [(28, [8, 16], [28, 14, 7]), (8, [8, 16], [8, 4, 2]), (7, [8, 16], [7, 4, 2]), (32, [4, 8, 8], [32, 16, 8, 4])],
)
def test_shapes_of_encode_decode_sample_interpolate(image_size, widths, sides):
    assert spatial_sizes(image_size, len(widths)) == sides
    cfg = VAEConfig(image_size=image_size, widths=widths, hidden=32, latent_dim=3)
    model = VAE(cfg)
    x = torch.rand(4, 1, image_size, image_size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert model.decode(mu).shape == (4, 1, image_size, image_size)
    samples = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (5, 1, image_size, image_size)
    assert samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples, model.sample(5, generator=torch.Generator().manual_seed(1)))
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    path = model.interpolate(x[:2], x[2:], steps=6)
    assert path.shape == (2, 6, 1, image_size, image_size)
    torch.testing.assert_close(path[:, 0], rec[:2])  # the end points decode the posterior means
    torch.testing.assert_close(path[:, -1], rec[2:])


def test_gaussian_likelihood_decodes_means_in_unit_interval():
    model = VAE(VAEConfig(image_size=8, widths=[8], hidden=16, latent_dim=2, likelihood="gaussian"))
    means = model.decode(3 * torch.randn(6, 2))
    assert means.min() >= 0 and means.max() <= 1
    torch.testing.assert_close(model.mean_image(means), means)
    with pytest.raises(ValueError, match="sigma=0"):
        VAEConfig(likelihood="gaussian", sigma=0)


def test_manifold_of_a_2d_latent():
    model = VAE(VAEConfig(image_size=8, widths=[8], hidden=16, latent_dim=2))
    grid = model.manifold(steps=5)
    assert grid.shape == (5, 5, 1, 8, 8)
    with pytest.raises(ValueError, match="latent_dim=2"):
        VAE(VAEConfig(image_size=8, widths=[8], hidden=16, latent_dim=3)).manifold()


def test_conditional_vae_uses_the_label():
    model = VAE(VAEConfig(image_size=8, widths=[8, 16], hidden=32, latent_dim=4, n_classes=10))
    x, z = torch.rand(3, 1, 8, 8), torch.randn(3, 4)
    y0, y1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    assert not torch.allclose(model.decode(z, y0), model.decode(z, y1))
    assert not torch.allclose(model.encode(x, y0)[0], model.encode(x, y1)[0])
    # one-hot float labels are the same as integer labels
    torch.testing.assert_close(model.decode(z, torch.eye(10)[y1]), model.decode(z, y1))
    assert model.sample(4, y=torch.full((4,), 7)).shape == (4, 1, 8, 8)
    assert model.sample(4).shape == (4, 1, 8, 8)  # cycles through the classes
    assert model.interpolate(x[:1], x[1:2], steps=3, y_a=y0[:1], y_b=y1[:1]).shape == (1, 3, 1, 8, 8)
    with pytest.raises(ValueError, match=r"conditional on 10 classes: pass labels y of shape \(3,\)"):
        model.decode(z)
    with pytest.raises(ValueError, match="labels y of shape"):
        model.decode(z, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        VAE(VAEConfig(image_size=8, widths=[8], hidden=16, latent_dim=4))(x, y0)


def test_wrong_shape_is_a_one_line_error():
    model = build_model(preset("vae-fashion"))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="expected images"):
        model.encode(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, 16\)"):
        model.decode(torch.randn(2, 2))
    with pytest.raises(ValueError, match="likelihood"):
        VAEConfig(likelihood="poisson")
    with pytest.raises(ValueError, match="widths"):
        VAEConfig(widths=[])
