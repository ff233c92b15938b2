"""Convolutional image classifiers: LeNet-style, VGG-style and a small residual net.

Axes: B batch, C channels, H height, W width, K classes.

A convolution slides a learned k x k filter over the image: out[c, i, j] = b_c +
sum_{c', u, v} w[c, c', u, v] x[c', i + u, j + v]; max-pooling keeps the largest value of each
2 x 2 window (halving H and W); the fully connected head maps the last feature maps to K
logits. Residual blocks (He et al. 2016, arXiv:1512.03385) add their input back,
y = relu(x + F(x)), which keeps deep stacks trainable.

Every stage's output is reachable through :meth:`CNN.features` (the studio draws them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from genlab.core.registry import register

ARCHS = ["lenet", "vgg", "resnet"]


@dataclass
class CNNConfig:
    arch: str = "vgg"  # lenet | vgg | resnet
    in_channels: int = 1
    image_size: int = 28
    n_classes: int = 10
    widths: list[int] = field(default_factory=lambda: [32, 64])  # channels of each stage
    hidden: int = 128  # width of the fully connected layer (lenet, vgg)
    dropout: float = 0.25
    batch_norm: bool = True

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch='{self.arch}' is not one of {ARCHS}")
        if not self.widths:
            raise ValueError("widths needs at least one stage")
        if self.image_size >> len(self.widths) < 1:
            raise ValueError(f"{len(self.widths)} stages halve a {self.image_size}px image to nothing")


def _norm(cfg: CNNConfig, c: int) -> nn.Module:
    return nn.BatchNorm2d(c) if cfg.batch_norm else nn.Identity()


def lenet_stage(cfg: CNNConfig, c_in: int, c_out: int) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998): 5 x 5 convolution, ReLU, 2 x 2 max-pool (padded to keep small images)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))


def vgg_stage(cfg: CNNConfig, c_in: int, c_out: int) -> nn.Sequential:
    """VGG-style (Simonyan & Zisserman 2014): two 3 x 3 convolutions with batch norm, then max-pool."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batch_norm),
        _norm(cfg, c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=not cfg.batch_norm),
        _norm(cfg, c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class ResidualBlock(nn.Module):
    """y = relu(shortcut(x) + bn(conv(relu(bn(conv(x)))))), stride 2 halves H and W."""

    def __init__(self, cfg: CNNConfig, c_in: int, c_out: int, stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(cfg, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = _norm(cfg, c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(cfg, c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.shortcut(x) + self.bn2(self.conv2(h)))


STAGES = {"lenet": lenet_stage, "vgg": vgg_stage}


class CNN(nn.Module):
    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.config = cfg
        c, side = cfg.in_channels, cfg.image_size
        stages = []
        if cfg.arch == "resnet":
            self.stem = nn.Sequential(
                nn.Conv2d(c, cfg.widths[0], 3, padding=1, bias=False), _norm(cfg, cfg.widths[0]), nn.ReLU()
            )
            c = cfg.widths[0]
            for w in cfg.widths:
                stages.append(ResidualBlock(cfg, c, w, stride=2))
                c, side = w, (side + 1) // 2
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c, cfg.n_classes)
            )
        else:
            self.stem = nn.Identity()
            for w in cfg.widths:
                stages.append(STAGES[cfg.arch](cfg, c, w))
                c, side = w, side // 2
            fc = [nn.Flatten(), nn.Linear(c * side * side, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            if cfg.arch == "lenet":  # LeNet-5's second fully connected layer (120 -> 84)
                fc += [nn.Linear(cfg.hidden, 84), nn.ReLU()]
            self.head = nn.Sequential(*fc, nn.Linear(84 if cfg.arch == "lenet" else cfg.hidden, cfg.n_classes))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1] -> logits (B, K)."""
        self._check(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the final linear layer, (B, D): the feature space of FID-FMNIST."""
        self._check(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head[:-1](x).flatten(1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The output of the stem and of every stage, (B, C_s, H_s, W_s), and the logits."""
        self._check(x)
        out = {"input": x}
        x = self.stem(x)
        if not isinstance(self.stem, nn.Identity):
            out["stem"] = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[f"stage{i}"] = x
        out["logits"] = self.head(x)
        return out

    def _check(self, x: torch.Tensor) -> None:
        cfg = self.config
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")


# --- Presets ---------------------------------------------------------------------------


@register("lenet-fashion")
def lenet_fashion() -> CNNConfig:
    """LeNet-5 shape: 6 and 16 channels of 5 x 5 filters, 120 and 84 hidden units."""
    return CNNConfig(arch="lenet", widths=[6, 16], hidden=120, dropout=0.0, batch_norm=False)


@register("cnn-fashion")
def cnn_fashion() -> CNNConfig:
    """Small VGG-style net for 28 x 28 images: two double-conv stages of 16 and 32 channels
    (~2,400 images/s of training on 2 CPU cores; 32/64 channels run at ~700)."""
    return CNNConfig(arch="vgg", widths=[16, 32], hidden=128, dropout=0.25)


@register("resnet-fashion")
def resnet_fashion() -> CNNConfig:
    """Small residual net: a 32-channel stem and residual stages of 32, 64 and 128 channels."""
    return CNNConfig(arch="resnet", widths=[32, 64, 128], dropout=0.1)


@register("cnn-digits")
def cnn_digits() -> CNNConfig:
    """For scikit-learn's 8 x 8 digits (tests and quick demos)."""
    return CNNConfig(arch="vgg", image_size=8, widths=[16, 32], hidden=64, dropout=0.1)
