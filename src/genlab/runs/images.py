"""Samples of a trained image generator (a VAE or GAN from :func:`genlab.runs.load_run`)."""

from __future__ import annotations

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError


def class_cycle(cfg, n: int) -> torch.Tensor | None:
    """Labels 0, 1, ..., K-1, 0, 1, ... for a class-conditional model (K images a row: each column
    one class); None for an unconditional one."""
    return torch.arange(n) % cfg.n_classes if cfg.n_classes else None


@torch.no_grad()
def draw(model: nn.Module, n: int, generator: torch.Generator, chunk: int = 500) -> torch.Tensor:
    """n samples (n, C, H, W) in [0, 1] of a VAE or GAN, ``chunk`` at a time; a conditional model
    cycles through the classes."""
    sizes = [min(chunk, n - i) for i in range(0, n, chunk)]
    return torch.cat([model.sample(m, class_cycle(model.config, m), generator=generator) for m in sizes])


@torch.no_grad()
def labelled_samples(model: nn.Module, per_class: int, seed: int = 0, chunk: int = 500) -> tuple:
    """``per_class`` generated images of every class of a conditional VAE or GAN: uint8 (N, H, W)
    images (the format of the datasets) and uint8 (N,) labels, class by class."""
    K = model.config.n_classes
    if not K:
        raise ConfigError("augmentation needs a conditional VAE or GAN; this model is unconditional")
    y = torch.arange(K).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([model.sample(len(y[i : i + chunk]), y[i : i + chunk], generator=gen)
                   for i in range(0, len(y), chunk)])  # fmt: skip
    images = (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return images, y.numpy().astype("uint8")


@torch.no_grad()
def draw_generator(g: nn.Module, cfg, n: int, generator: torch.Generator, chunk: int = 500) -> torch.Tensor:
    """What ``draw`` computes for a GAN, through the generator module ``g`` itself (e.g. the
    compiled one an evaluation receives): z ~ N(0, I) from ``generator``, ``chunk`` at a time, the
    classes cycled for a conditional GAN. ``g`` is in eval mode (the caller's)."""
    device = next(g.parameters()).device
    out = []
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        y = class_cycle(cfg, m)
        z = torch.randn(m, cfg.latent_dim, generator=generator, device=generator.device)
        out.append(g(z.to(device), None if y is None else y.to(device)))
    return torch.cat(out)
