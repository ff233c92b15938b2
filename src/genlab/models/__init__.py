"""Tier 2: model families. Each family reads top-down in one file.

:func:`build_model` turns any registered config into its model; families register
their config class in :data:`FAMILIES` when imported.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.models import bert, cnn, forecast, gan, gpt, seq2seq, showtell, vae, vit

FAMILIES: dict[str, tuple[type, type[nn.Module]]] = {
    "gpt": (gpt.GPTConfig, gpt.GPT),
    "bert": (bert.BertConfig, bert.Bert),
    "cnn": (cnn.CNNConfig, cnn.CNN),
    "gan": (gan.GANConfig, gan.GAN),
    "vae": (vae.VAEConfig, vae.VAE),
    "seq2seq": (seq2seq.Seq2SeqConfig, seq2seq.Seq2Seq),
    "vit": (vit.ViTConfig, vit.ViT),
    "forecast": (forecast.ForecastConfig, forecast.Forecaster),
    "showtell": (showtell.ShowTellConfig, showtell.ShowTell),
}


def config_class(family: str) -> type:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{family}'; choose from {sorted(FAMILIES)}")
    return FAMILIES[family][0]


def build_model(config: Any) -> nn.Module:
    for cfg_cls, model_cls in FAMILIES.values():
        if isinstance(config, cfg_cls):
            return model_cls(config)
    raise ConfigError(f"no model family for config {type(config).__name__}")


def family_of(config: Any) -> str:
    for name, (cfg_cls, _) in FAMILIES.items():
        if isinstance(config, cfg_cls):
            return name
    raise ConfigError(f"no model family for config {type(config).__name__}")
