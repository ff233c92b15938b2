"""Generative adversarial networks: DCGAN, conditional DCGAN, spectral norm and EMA.

Axes: B batch, Z latent dim, C channels, H height, W width (H = W = image_size), K classes.

A GAN (Goodfellow et al. 2014, arXiv:1406.2661) trains a generator G: z -> x against a
discriminator D: x -> logit in the two-player game

    min_G max_D  E_x[log sigmoid(D(x))] + E_z[log(1 - sigmoid(D(G(z))))],   z ~ N(0, I_Z)

(the losses, and the hinge and Wasserstein variants, are in ``genlab.objectives.adversarial``).

DCGAN (Radford et al. 2015, arXiv:1511.06434) makes both sides convolutional:

- G projects z to a (C_0, s, s) tensor, then each 4 x 4 transposed convolution with stride 2
  doubles H and W (batch norm + ReLU between them); the last one outputs the image.
  DCGAN ends in tanh for images in [-1, 1]; genlab's images are in [0, 1] (``to_float``), so
  G ends in sigmoid(a) = (tanh(a / 2) + 1) / 2, the same curve mapped onto [0, 1].
- D mirrors it: 4 x 4 convolutions with stride 2 halve H and W, LeakyReLU(0.2), batch norm
  on every layer but the first, then one linear map to a single logit.
- Weights start from N(0, 0.02), batch-norm scales from N(1, 0.02).

Conditional GAN (Mirza & Osindero 2014, arXiv:1411.1784): with ``n_classes`` = K > 0, G reads
[z; e_y] (a learned label embedding concatenated to z) and D scores the pair (x, y) with a
projection discriminator (Miyato & Koyama 2018, arXiv:1802.05637):

    D(x, y) = w^T phi(x) + b + <E[y], phi(x)>,   phi(x) = the flattened last feature maps.

Spectral normalization (Miyato et al. 2018, arXiv:1802.05957) divides each of D's weights by
its largest singular value, W / sigma(W), sigma estimated by one power iteration per forward
pass; it keeps D 1-Lipschitz per layer and replaces D's batch norm.

EMA of G's weights (Karras et al. 2018, arXiv:1710.10196; Yazici et al. 2019, arXiv:1806.04498):
after each generator step, theta_ema <- d * theta_ema + (1 - d) * theta_G. The averaged
generator samples better than the live one; it is a copy that no optimizer touches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genlab.core.registry import register


@dataclass
class GANConfig:
    in_channels: int = 1
    image_size: int = 28
    latent_dim: int = 64  # Z
    g_widths: list[int] = field(default_factory=lambda: [128, 64])  # G's channels, from the (s, s) seed upward
    d_widths: list[int] = field(default_factory=lambda: [64, 128])  # D's channels, from the image downward
    n_classes: int = 0  # K > 0: conditional GAN
    label_dim: int = 16  # size of G's label embedding (conditional only)
    spectral_norm: bool = False  # on D's layers (then D has no batch norm)
    batch_norm_d: bool = True  # batch norm in D (ignored under spectral_norm; off for WGAN-GP)
    batch_norm_g: bool = True
    ema: float = 0.0  # decay of the EMA of G's weights; 0 disables
    ema_warmup: int = 10  # at step t the decay is min(ema, (1 + t) / (ema_warmup + t)); 0: always ema

    def __post_init__(self):
        if not self.g_widths or not self.d_widths:
            raise ValueError("g_widths and d_widths need at least one layer each")
        up = 2 ** len(self.g_widths)
        if self.image_size % up:
            raise ValueError(f"{len(self.g_widths)} stride-2 layers of G need image_size divisible by {up}")
        if d_side(self.image_size, len(self.d_widths)) < 1:
            raise ValueError(f"{len(self.d_widths)} stride-2 layers of D halve a {self.image_size}px image to nothing")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema={self.ema} must be a decay in [0, 1) (0 disables)")
        if self.n_classes < 0 or self.latent_dim < 1:
            raise ValueError("n_classes must be >= 0 and latent_dim >= 1")

    @property
    def conditional(self) -> bool:
        return self.n_classes > 0


def d_side(size: int, n_layers: int) -> int:
    """Side of D's last feature map: each 4 x 4 stride-2 pad-1 conv maps n -> (n - 2) // 2 + 1."""
    for _ in range(n_layers):
        size = (size - 2) // 2 + 1
    return size


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: weights ~ N(0, 0.02), batch-norm scale ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _check_labels(cfg: GANConfig, y: torch.Tensor | None, batch: int, who: str) -> None:
    if cfg.conditional and (y is None or y.shape != (batch,)):
        got = "none" if y is None else tuple(y.shape)
        raise ValueError(f"conditional {who} needs labels y of shape ({batch},), got {got}")
    if not cfg.conditional and y is not None:
        raise ValueError(f"unconditional {who} takes no labels (n_classes=0); pass y=None")


class Generator(nn.Module):
    """z (B, Z) [+ labels (B,)] -> images (B, C, H, W) in [0, 1]."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.config = cfg
        w, side = cfg.g_widths, cfg.image_size >> len(cfg.g_widths)
        norm = (lambda c: nn.BatchNorm2d(c)) if cfg.batch_norm_g else (lambda c: nn.Identity())
        bias = not cfg.batch_norm_g
        self.label = nn.Embedding(cfg.n_classes, cfg.label_dim) if cfg.conditional else None
        z_in = cfg.latent_dim + (cfg.label_dim if cfg.conditional else 0)
        self.project = nn.Sequential(
            nn.Linear(z_in, w[0] * side * side, bias=bias),
            nn.Unflatten(1, (w[0], side, side)),  # (B, C_0, s, s)
            norm(w[0]),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), norm(c_out), nn.ReLU())
            for c_in, c_out in zip(w[:-1], w[1:])
        )
        self.to_image = nn.ConvTranspose2d(w[-1], cfg.in_channels, 4, 2, 1)  # (B, C, H, W) logits
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if z.dim() != 2 or z.shape[1] != cfg.latent_dim:
            raise ValueError(f"expected latents of shape (B, {cfg.latent_dim}), got {tuple(z.shape)}")
        _check_labels(cfg, y, z.shape[0], "generator")
        if self.label is not None:
            z = torch.cat([z, self.label(y)], dim=1)  # (B, Z + label_dim)
        h = self.project(z)  # (B, C_0, s, s)
        for block in self.blocks:
            h = block(h)  # (B, C_i, 2 s_i, 2 s_i)
        return torch.sigmoid(self.to_image(h))  # (B, C, H, W) in [0, 1]


class Discriminator(nn.Module):
    """images (B, C, H, W) in [0, 1] [+ labels (B,)] -> logits (B,)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.config = cfg
        use_bn = cfg.batch_norm_d and not cfg.spectral_norm
        layers: list[nn.Module] = []
        c = cfg.in_channels
        for i, w in enumerate(cfg.d_widths):
            layers.append(nn.Conv2d(c, w, 4, 2, 1, bias=not (use_bn and i > 0)))
            if use_bn and i > 0:  # DCGAN: no batch norm on D's input layer
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2))
            c = w
        self.features = nn.Sequential(*layers, nn.Flatten())  # (B, F)
        n_features = c * d_side(cfg.image_size, len(cfg.d_widths)) ** 2
        self.head = nn.Linear(n_features, 1)
        self.embed = nn.Embedding(cfg.n_classes, n_features) if cfg.conditional else None  # projection E
        self.apply(dcgan_init)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if cfg.spectral_norm:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    _spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        _check_labels(cfg, y, x.shape[0], "discriminator")
        h = self.features(x)  # (B, F)
        logit = self.head(h).squeeze(-1)  # (B,)
        if self.embed is not None:
            logit = logit + (self.embed(y) * h).sum(-1)  # projection: <E[y], phi(x)>
        return logit


class GAN(nn.Module):
    """Holds ``generator``, ``discriminator`` and, when ``ema`` > 0, ``generator_ema``.

    ``forward(z, y)`` is the live generator; :meth:`sample` draws images; train the two parts
    with :func:`gan_parts` and the losses of ``genlab.objectives.adversarial``.
    """

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.config = cfg
        self.generator = Generator(cfg)
        self.discriminator = Discriminator(cfg)
        self.generator_ema: Generator | None = None
        if cfg.ema > 0:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, y)

    @torch.no_grad()
    def update_ema(self, step: int | None = None) -> None:
        """theta_ema <- d * theta_ema + (1 - d) * theta_G; buffers (batch-norm statistics) are copied.

        Given the training ``step`` t, d = min(ema, (1 + t) / (ema_warmup + t)): early on the average
        forgets fast, so it does not keep the random initialisation's weight for thousands of steps
        (0.999 ** 1500 = 0.22 of it after 1500 steps); this is the schedule of TensorFlow's
        ExponentialMovingAverage with num_updates.
        """
        if self.generator_ema is None:
            raise ValueError("this GAN keeps no EMA generator (ema=0): build it with ema > 0")
        d = self.config.ema
        if step is not None and self.config.ema_warmup > 0:
            d = min(d, (1 + step) / (self.config.ema_warmup + step))
        for e, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for e, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            e.copy_(b)
        self.ema_updates += 1

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        use_ema: bool = True,
    ) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1], G in eval mode (batch norm uses running statistics).

        ``use_ema`` picks the EMA generator once it has been updated at least once (before
        that it is still G's initialisation, so the live G is used). A conditional GAN without
        ``y`` draws the labels 0, 1, ..., K-1, 0, 1, ... in turn; ``generator`` seeds z.
        """
        cfg = self.config
        g = self.generator
        if use_ema and self.generator_ema is not None and int(self.ema_updates) > 0:
            g = self.generator_ema
        device = next(g.parameters()).device
        if cfg.conditional and y is None:
            y = torch.arange(n, device=device) % cfg.n_classes
        z = torch.randn(n, cfg.latent_dim, generator=generator, device=generator.device if generator else device)
        was_training = g.training
        g.eval()
        try:
            return g(z.to(device), None if y is None else y.to(device))
        finally:
            g.train(was_training)


def gan_parts(gan: GAN, include_ema: bool = False) -> dict[str, nn.Module]:
    """The models for ``Trainer``: {"generator": G, "discriminator": D} (+ "generator_ema" to checkpoint it)."""
    parts: dict[str, nn.Module] = {"generator": gan.generator, "discriminator": gan.discriminator}
    if include_ema and gan.generator_ema is not None:
        parts["generator_ema"] = gan.generator_ema
    return parts


# --- Presets ---------------------------------------------------------------------------


@register("dcgan-fashion")
def dcgan_fashion() -> GANConfig:
    """DCGAN for 28 x 28 Fashion-MNIST: G 64 -> (128, 7, 7) -> (64, 14, 14) -> (1, 28, 28), D mirrors it."""
    return GANConfig(latent_dim=64, g_widths=[128, 64], d_widths=[64, 128], ema=0.999)


@register("cdcgan-fashion")
def cdcgan_fashion() -> GANConfig:
    """Conditional DCGAN on the 10 Fashion-MNIST classes, spectrally normalised projection D."""
    return GANConfig(latent_dim=64, g_widths=[128, 64], d_widths=[64, 128], n_classes=10, spectral_norm=True, ema=0.999)


@register("dcgan-digits")
def dcgan_digits() -> GANConfig:
    """Small DCGAN for scikit-learn's 8 x 8 digits (tests and quick demos): 2 x 2 -> 4 x 4 -> 8 x 8."""
    return GANConfig(image_size=8, latent_dim=32, g_widths=[64, 32], d_widths=[32, 64])
