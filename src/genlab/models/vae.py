"""Variational autoencoders: the VAE, the beta-VAE and the conditional VAE, with conv encoder and decoder.

Axes: B batch, C channels, H height, W width (H = W = image_size), L latent dim, K classes.

A VAE (Kingma & Welling 2013, arXiv:1312.6114) is a latent-variable model p(x, z) = p(z) p(x | z) with
prior p(z) = N(0, I) and a decoder network giving the parameters of p(x | z). An encoder network
q(z | x) = N(mu(x), diag(sigma^2(x))) approximates the posterior; both are trained together by
maximising the evidence lower bound (ELBO)::

    log p(x) >= E_q[log p(x | z)] - KL(q(z | x) || p(z))

The expectation is taken through the reparameterisation trick, which moves the noise out of the
network so gradients flow to mu and sigma::

    z = mu + sigma * eps,   eps ~ N(0, I),   sigma = exp(logvar / 2)

The beta-VAE (Higgins et al. 2017) weights the KL term by beta (> 1: more disentangled, blurrier);
that weight lives in the objective (:mod:`genlab.objectives.elbo`), not here. The conditional VAE
(Sohn et al. 2015, "Learning Structured Output Representation using Deep Conditional Generative
Models") models p(x | y) by giving the one-hot label y to the encoder, q(z | x, y), and to the
decoder, p(x | z, y); sampling with a chosen y draws an image of that class.

Likelihoods p(x | z) (``likelihood``): ``"bernoulli"``, each pixel an independent Bernoulli whose
logit the decoder outputs (intensities in [0, 1] are used as soft targets); ``"gaussian"``, each
pixel N(mean, sigma^2) with the mean in [0, 1] from a sigmoid and a fixed ``sigma``. :meth:`VAE.decode` returns those
parameters (logits or means); :meth:`VAE.sample`, :meth:`VAE.reconstruct` and
:meth:`VAE.interpolate` return mean images in [0, 1].

Spatial sizes: a stride-2 3 x 3 convolution with padding 1 maps side s to ceil(s / 2)
(28 -> 14 -> 7, 8 -> 4 -> 2); the transposed convolution back maps s to 2 s - 1 + output_padding,
so output_padding = 1 restores an even side and 0 an odd one (7 -> 14 -> 28, 2 -> 4 -> 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.registry import register

LIKELIHOODS = ["bernoulli", "gaussian"]


@dataclass
class VAEConfig:
    in_channels: int = 1
    image_size: int = 28
    latent_dim: int = 16
    widths: list[int] = field(default_factory=lambda: [32, 64])  # channels of each stride-2 conv of the encoder
    hidden: int = 256  # width of the fully connected layer on each side
    n_classes: int = 0  # > 0: conditional VAE on one-hot labels of this many classes
    likelihood: str = "bernoulli"  # bernoulli | gaussian
    sigma: float = 1.0  # gaussian: the decoder's fixed standard deviation per pixel (about 0.1 suits images)

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood='{self.likelihood}' is not one of {LIKELIHOODS}")
        if not self.widths:
            raise ValueError("widths needs at least one stage")
        if self.sigma <= 0:
            raise ValueError(f"sigma={self.sigma} must be positive")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim={self.latent_dim} must be at least 1")
        if self.n_classes < 0:
            raise ValueError(f"n_classes={self.n_classes} must be 0 (unconditional) or the number of classes")
        if self.image_size < 1 or self.in_channels < 1:
            raise ValueError(f"image_size={self.image_size} and in_channels={self.in_channels} must be positive")


@dataclass
class VAEOutput:
    recon: torch.Tensor  # (B, C, H, W) parameters of p(x | z): logits (bernoulli) or means (gaussian)
    mu: torch.Tensor  # (B, L) mean of q(z | x)
    logvar: torch.Tensor  # (B, L) log-variance of q(z | x)
    z: torch.Tensor  # (B, L) the reparameterised sample decoded into recon


def spatial_sizes(image_size: int, stages: int) -> list[int]:
    """Sides after each stride-2 convolution, input first: 28, 2 stages -> [28, 14, 7]."""
    sides = [image_size]
    for _ in range(stages):
        sides.append((sides[-1] + 1) // 2)
    return sides


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        C, K, L = cfg.in_channels, cfg.n_classes, cfg.latent_dim
        sides = spatial_sizes(cfg.image_size, len(cfg.widths))
        chans = [C, *cfg.widths]
        self.bottom = (chans[-1], sides[-1], sides[-1])  # (C_last, H_last, W_last)
        flat = chans[-1] * sides[-1] ** 2

        # Encoder q(z | x, y): stride-2 convs -> flatten -> [features, onehot(y)] -> FC -> (mu, logvar).
        convs: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):  # side s -> ceil(s / 2)
            convs += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        self.enc_fc = nn.Sequential(nn.Linear(flat + K, cfg.hidden), nn.ReLU())
        self.to_mu = nn.Linear(cfg.hidden, L)
        self.to_logvar = nn.Linear(cfg.hidden, L)

        # Decoder p(x | z, y): [z, onehot(y)] -> FC -> reshape -> transposed convs back to (C, H, W).
        self.dec_fc = nn.Sequential(nn.Linear(L + K, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, flat), nn.ReLU())
        deconvs: list[nn.Module] = []
        for i in reversed(range(len(cfg.widths))):  # side sides[i + 1] -> sides[i], channels chans[i + 1] -> chans[i]
            pad = 1 if sides[i] % 2 == 0 else 0
            deconvs.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 3, stride=2, padding=1, output_padding=pad))
            if i > 0:
                deconvs.append(nn.ReLU())
        self.deconvs = nn.Sequential(*deconvs)

    # --- the model -----------------------------------------------------------------------

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, H, W) in [0, 1] -> mu (B, L), logvar (B, L) of q(z | x, y)."""
        self._check(x)
        h = self.convs(x).flatten(1)  # (B, C_last * H_last * W_last)
        h = self.enc_fc(self._with_label(h, y))  # (B, hidden)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, L) -> parameters of p(x | z, y), (B, C, H, W): logits (bernoulli) or means in [0, 1] (gaussian)."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"expected latents of shape (B, {self.config.latent_dim}), got {tuple(z.shape)}")
        h = self.dec_fc(self._with_label(z, y)).view(-1, *self.bottom)  # (B, C_last, H_last, W_last)
        out = self.deconvs(h)  # (B, C, H, W)
        return torch.sigmoid(out) if self.config.likelihood == "gaussian" else out

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput:
        """Encode, draw z = mu + exp(logvar / 2) * eps with eps ~ N(0, I), decode."""
        mu, logvar = self.encode(x, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return VAEOutput(recon=self.decode(z, y), mu=mu, logvar=logvar, z=z)

    # --- looking at it -------------------------------------------------------------------

    def mean_image(self, params: torch.Tensor) -> torch.Tensor:
        """Decoder output -> the mean of p(x | z), an image in [0, 1]: sigmoid(logits) or the Gaussian mean."""
        return torch.sigmoid(params) if self.config.likelihood == "bernoulli" else params

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from z ~ N(0, I) (the mean of p(x | z), not pixel noise).

        A conditional VAE draws class ``y`` (n,); without ``y`` it cycles through the classes 0, 1, ..., K-1.
        """
        device = next(self.parameters()).device
        if self.config.n_classes and y is None:
            y = torch.arange(n, device=device) % self.config.n_classes
        noise_device = generator.device if generator is not None else device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=noise_device)  # (n, L)
        return self.mean_image(self.decode(z.to(device), y))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the posterior mean: (B, C, H, W) in [0, 1]."""
        mu, _ = self.encode(x, y)
        return self.mean_image(self.decode(mu, y))

    @torch.no_grad()
    def interpolate(
        self,
        x_a: torch.Tensor,
        x_b: torch.Tensor,
        steps: int = 8,
        y_a: torch.Tensor | None = None,
        y_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, C, H, W) pairs -> (B, steps, C, H, W) images decoded along z_t = (1 - t) mu_a + t mu_b, t in [0, 1].

        A conditional VAE also moves its (soft) one-hot label from y_a to y_b (y_b defaults to y_a).
        """
        mu_a, _ = self.encode(x_a, y_a)
        mu_b, _ = self.encode(x_b, y_b if y_b is not None else y_a)
        B = mu_a.shape[0]
        t = torch.linspace(0, 1, steps, device=mu_a.device).view(1, steps, 1)  # (1, steps, 1)
        z = ((1 - t) * mu_a[:, None] + t * mu_b[:, None]).flatten(0, 1)  # (B * steps, L)
        y = None
        if self.config.n_classes:
            oh_a = self._onehot(y_a, B)
            oh_b = self._onehot(y_b, B) if y_b is not None else oh_a
            y = ((1 - t) * oh_a[:, None] + t * oh_b[:, None]).flatten(0, 1)  # (B * steps, K)
        images = self.mean_image(self.decode(z, y))  # (B * steps, C, H, W)
        return images.view(B, steps, *images.shape[1:])

    @torch.no_grad()
    def manifold(self, steps: int = 15, y: int | None = None) -> torch.Tensor:
        """For a 2-d latent: (steps, steps, C, H, W) images decoded on a grid of prior quantiles 5%..95%
        (Kingma & Welling 2013, figure 4): z_1 grows left to right, z_2 bottom to top. A conditional VAE
        decodes every cell with the class ``y`` (default 0)."""
        if self.config.latent_dim != 2:
            raise ValueError(f"manifold needs latent_dim=2, this VAE has latent_dim={self.config.latent_dim}")
        device = next(self.parameters()).device
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps)).to(device)  # (steps,)
        z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # (steps, steps): row i, column j
        z = torch.stack([z1, z2], dim=-1).view(-1, 2)  # (steps * steps, 2)
        labels = None
        if self.config.n_classes:
            labels = torch.full((steps * steps,), int(y) if y is not None else 0, device=device)
        images = self.mean_image(self.decode(z, labels))
        return images.view(steps, steps, *images.shape[1:])

    # --- helpers -------------------------------------------------------------------------

    def _onehot(self, y: torch.Tensor | None, B: int) -> torch.Tensor:
        """Labels (B,) int64 or soft labels (B, K) float -> (B, K) float."""
        K = self.config.n_classes
        if y is None:
            raise ValueError(f"this VAE is conditional on {K} classes: pass labels y of shape ({B},)")
        if y.dim() == 2 and y.is_floating_point() and tuple(y.shape) == (B, K):
            return y
        if y.dim() != 1 or y.shape[0] != B or y.is_floating_point():
            raise ValueError(f"expected labels y of shape ({B},) or one-hot ({B}, {K}), got {tuple(y.shape)}")
        return F.one_hot(y.long(), K).float()

    def _with_label(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """[h, onehot(y)] for a conditional VAE (B, D + K); h unchanged otherwise (y must then be None)."""
        if not self.config.n_classes:
            if y is not None:
                raise ValueError("this VAE is unconditional (n_classes=0): do not pass labels y")
            return h
        return torch.cat([h, self._onehot(y, h.shape[0]).to(h.dtype)], dim=1)

    def _check(self, x: torch.Tensor) -> None:
        cfg = self.config
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")


# --- Presets ---------------------------------------------------------------------------


@register("vae-fashion")
def vae_fashion() -> VAEConfig:
    """Fashion-MNIST VAE: stride-2 convs of 32 and 64 channels (28 -> 14 -> 7), 256 hidden, 16 latents."""
    return VAEConfig(latent_dim=16)


@register("vae-fashion-2d")
def vae_fashion_2d() -> VAEConfig:
    """Two latents, so the whole decoded manifold fits on one page (:meth:`VAE.manifold`)."""
    return VAEConfig(latent_dim=2)


@register("cvae-fashion")
def cvae_fashion() -> VAEConfig:
    """Conditional VAE on the 10 Fashion-MNIST classes: sample(n, y) draws garments of class y."""
    return VAEConfig(latent_dim=16, n_classes=10)


@register("vae-digits")
def vae_digits() -> VAEConfig:
    """For scikit-learn's 8 x 8 digits (8 -> 4 -> 2): tests and quick demos."""
    return VAEConfig(image_size=8, latent_dim=8, widths=[16, 32], hidden=128)
