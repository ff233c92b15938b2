import functools
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from genlab.core.registry import preset, presets
from genlab.data.images import ImageBatches, load_digits
from genlab.models import build_model, family_of
from genlab.models.gan import GAN, GANConfig, gan_parts
from genlab.objectives.adversarial import discriminator_step, generator_step
from genlab.training.checkpoint import load_weights, model_tensors
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.runtime import Runtime

GAN_PRESETS = [n for n in presets() if isinstance(preset(n), GANConfig)]
TINY = dict(image_size=8, latent_dim=4, g_widths=[4, 2], d_widths=[2, 4])


def test_every_gan_preset_is_covered():
    assert {"dcgan-fashion", "cdcgan-fashion", "dcgan-digits"} <= set(GAN_PRESETS)
    assert family_of(preset("dcgan-digits")) == "gan"


def test_whole_gan_save_load_keeps_the_ema(tmp_path):
    from safetensors.torch import save_file

    gan = GAN(GANConfig(**TINY, ema=0.5))
    gan.update_ema()
    save_file(model_tensors(gan), str(tmp_path / "gan.safetensors"))
    other = GAN(GANConfig(**TINY, ema=0.5))
    load_weights(other, tmp_path / "gan.safetensors")
    assert int(other.ema_updates) == 1
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(other.sample(4, generator=g), gan.sample(4, generator=g.manual_seed(1)))


def test_image_size_28_halves_to_7_and_8_to_2():
    G28, D28 = GAN(GANConfig()).generator, GAN(GANConfig()).discriminator
    assert G28.project(torch.randn(2, 64)).shape == (2, 128, 7, 7)
    assert D28.features[:-1](torch.rand(2, 1, 28, 28)).shape == (2, 128, 7, 7)
    digits = GAN(preset("dcgan-digits"))
    assert digits.generator.project(torch.randn(2, 32)).shape == (2, 64, 2, 2)


def test_conditional_generator_depends_on_the_label():
    gan = build_model(preset("cdcgan-fashion")).eval()
    z = torch.randn(1, 64).expand(10, 64)
    x = gan.generator(z, torch.arange(10))
    assert (x[1:] - x[0]).abs().flatten(1).amax(1).min() > 1e-4  # every class differs from class 0
    x_same = gan.generator(z, torch.zeros(10, dtype=torch.long))
    torch.testing.assert_close(x_same[1:], x_same[:1].expand(9, -1, -1, -1))
    d = gan.discriminator(x.detach(), torch.arange(10))
    assert not torch.allclose(d, gan.discriminator(x.detach(), torch.zeros(10, dtype=torch.long)))


def test_spectral_norm_wraps_every_layer_of_d_and_drops_its_batch_norm():
    D = GAN(GANConfig(**{**TINY, "d_widths": [8, 16]}, n_classes=3, spectral_norm=True)).discriminator
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) == 4 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    for _ in range(30):  # each training-mode forward is one power iteration
        D(x, y)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    plain = GAN(GANConfig(**TINY)).discriminator
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_update_ema_follows_the_decay_formula_exactly():
    gan = GAN(GANConfig(**TINY, ema=0.75))
    ema, G = gan.generator_ema, gan.generator
    assert not any(p.requires_grad for p in ema.parameters())
    assert {id(p) for p in gan_parts(gan)["generator"].parameters()}.isdisjoint(id(p) for p in ema.parameters())
    with torch.no_grad():
        for e, p in zip(ema.parameters(), G.parameters()):
            e.zero_()
            p.fill_(4.0)
        G.project[2].running_mean.fill_(3.0)
    gan.update_ema()  # 0.75 * 0 + 0.25 * 4 = 1
    assert all(torch.equal(e, torch.ones_like(e)) for e in ema.parameters())
    gan.update_ema()  # 0.75 * 1 + 0.25 * 4 = 1.75
    assert all(torch.equal(e, torch.full_like(e, 1.75)) for e in ema.parameters())
    assert torch.equal(ema.project[2].running_mean, G.project[2].running_mean)  # buffers are copied
    assert int(gan.ema_updates) == 2
    gan.update_ema(step=2)  # warm-up: d = min(0.75, 3 / 12) = 0.25 -> 0.25 * 1.75 + 0.75 * 4 = 3.4375
    assert all(torch.equal(e, torch.full_like(e, 3.4375)) for e in ema.parameters())
    assert set(gan_parts(gan, include_ema=True)) == {"generator", "discriminator", "generator_ema"}
    with pytest.raises(ValueError, match="ema"):
        GAN(GANConfig(**TINY)).update_ema()


def test_sample_is_seeded_in_range_and_restores_training_mode():
    gan = GAN(GANConfig(**TINY, n_classes=3, ema=0.9))
    a = gan.sample(5, generator=torch.Generator().manual_seed(0))
    b = gan.sample(5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert gan.generator.training and not a.requires_grad
    # no EMA update yet: the EMA copy is still G's initialisation, so the live G samples
    live = gan.sample(5, generator=torch.Generator().manual_seed(0), use_ema=False)
    assert torch.equal(a, live)
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(0.1)
    gan.update_ema()
    ema = gan.sample(5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(ema, gan.sample(5, generator=torch.Generator().manual_seed(0), use_ema=False))


def test_wrong_shapes_and_configs_are_clear_errors():
    gan = build_model(preset("dcgan-digits"))
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, 32\)"):
        gan.generator(torch.randn(2, 31))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 8, 8\)"):
        gan.discriminator(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="takes no labels"):
        gan.discriminator(torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))
    cond = build_model(preset("cdcgan-fashion"))
    with pytest.raises(ValueError, match="needs labels"):
        cond.generator(torch.randn(2, 64))
    with pytest.raises(ValueError, match="divisible by 8"):
        GANConfig(image_size=28, g_widths=[8, 8, 8])
    with pytest.raises(ValueError, match="ema"):
        GANConfig(ema=1.0)


def test_trainer_trains_dcgan_digits_with_two_phases():
    torch.manual_seed(0)
    cfg = preset("dcgan-digits")
    gan = GAN(cfg)
    images, labels = load_digits("train")
    data = ImageBatches(images[:512], labels[:512], batch_size=64, seed=0)
    models = gan_parts(gan)
    opts = {k: torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for k, m in models.items()}
    phases = [
        Phase(
            functools.partial(discriminator_step, kind="nonsaturating", latent_dim=cfg.latent_dim),
            "discriminator",
            "d_loss",
        ),
        Phase(
            functools.partial(generator_step, kind="nonsaturating", latent_dim=cfg.latent_dim), "generator", "g_loss"
        ),
    ]
    train = TrainConfig(
        max_steps=60,
        warmup_steps=0,
        schedule="constant",
        eval_interval=0,
        log_interval=5,
        progress=False,
        tensorboard=False,
    )
    trainer = Trainer(models, opts, phases, Runtime(torch.device("cpu"), torch.float32), train, unit="img")
    trainer.fit(data)
    rows = trainer.history
    assert len(rows) == 12 and trainer.step == 60
    for opt in opts.values():  # both optimizers stepped on every step
        assert all(int(opt.state[p]["step"]) == 60 for g in opt.param_groups for p in g["params"])
    keys = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc", "g_d_fake")
    assert all(math.isfinite(r[k]) for r in rows for k in keys)
    assert len({round(r["g_loss"], 6) for r in rows}) > 1 and len({round(r["d_fake"], 6) for r in rows}) > 1
    assert max(r["d_acc"] for r in rows) > 0.5
    assert gan.sample(4).shape == (4, 1, 8, 8)
