"""Gato: one decoder-only GPT over one token sequence of text, image patches, observations and actions.

Reed et al. 2022, "A Generalist Agent", arXiv:2205.06175.

Axes: B batch, T time, N patches per image, D patch values (3 P P), C model dim, V vocab.

The Transformer is :class:`genlab.models.gpt.GPT`, unchanged (its state-dict keys sit under
``gpt.``). What Gato adds is its input embedding (sec. 2.2): a token id is embedded by the GPT's
table, except an image patch slot (``image_id``), whose embedding is the patch's linear projection
plus a learned position within the image (the paper uses a ResNet block on each patch and
quantised row/column positions; here the ViT-style projection of :mod:`genlab.models.vit`)::

    e_t = E[ids_t]                          ids_t a text, value, separator or action id
    e_t = x_p^n W_patch + E_img[n]          ids_t = image_id, the n-th slot of its image
    logits = GPT(e + E_pos)                 (B, T, V)

What each id means, the token-space layout, is config data (``layout``: the run's
:class:`genlab.data.gato.TokenLayout` as a dict; this tier does not import ``data``). The
model reads only ``image_id``, ``n_patches`` and ``patch_dim`` from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.layers.positional import sinusoidal_table
from genlab.models.gpt import GPT, GPTConfig

#: How the continuous-value bins' token embeddings start. ``normal``: like every token (N(0, 0.02)),
#: each bin on its own, as in the paper; ``ordinal``: the sinusoidal table of the bin index (Vaswani
#: et al. 2017) at the same scale, so that neighbouring values start with similar embeddings and a
#: small model trained briefly need not learn the order of 1024 bins from data (trainable either way).
VALUE_INITS = ("ordinal", "normal")


@dataclass
class GatoConfig:
    gpt: GPTConfig = field(default_factory=GPTConfig)  # vocab_size: the whole token space
    image_id: int = -1  # the id of an image patch slot; -1: a run without images
    n_patches: int = 16  # N: slots per image
    patch_dim: int = 192  # D: 3 channels x P x P values per patch
    value_offset: int = -1  # the first continuous-value id (the bins follow); -1: none
    value_bins: int = 0
    value_init: str = "normal"  # normal | ordinal: how the value bins' embeddings start (VALUE_INITS)
    layout: dict = field(default_factory=dict)  # the token-space layout (genlab.data.gato.TokenLayout) as data

    def __post_init__(self):
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig(**self.gpt)
        if self.value_init not in VALUE_INITS:
            raise ConfigError(f"value_init='{self.value_init}' is not one of {VALUE_INITS}")
        if self.value_bins and self.value_offset + self.value_bins > self.gpt.vocab_size:
            raise ConfigError(f"the value bins [{self.value_offset}, +{self.value_bins}) exceed the vocabulary")
        if self.image_id >= self.gpt.vocab_size:
            raise ConfigError(f"image_id={self.image_id} is outside the vocabulary of {self.gpt.vocab_size}")

    @property
    def block_size(self) -> int:
        return self.gpt.block_size


class Gato(nn.Module):
    def __init__(self, cfg: GatoConfig):
        super().__init__()
        self.config = cfg
        self.gpt = GPT(cfg.gpt)
        C = cfg.gpt.n_embd
        self.patch = nn.Linear(cfg.patch_dim, C)  # W_patch
        self.patch_pos = nn.Embedding(cfg.n_patches, C)  # E_img: position within the image
        nn.init.normal_(self.patch.weight, 0.0, cfg.gpt.init_std)
        nn.init.zeros_(self.patch.bias)
        nn.init.normal_(self.patch_pos.weight, 0.0, cfg.gpt.init_std)
        if cfg.value_bins and cfg.value_init == "ordinal":
            with torch.no_grad():  # neighbouring bins start close: (bins, C), entries of std init_std
                table = sinusoidal_table(cfg.value_bins, C) * (cfg.gpt.init_std * math.sqrt(2))
                self.gpt.tok_emb.weight[cfg.value_offset : cfg.value_offset + cfg.value_bins] = table

    def embed(self, ids: torch.Tensor, patches: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids and (B, N, D) patches -> (B, T, C): each row's image slots take its patches in order."""
        x = self.gpt.tok_emb(ids)  # (B, T, C)
        slots = ids == self.config.image_id  # (B, T)
        if self.config.image_id < 0 or not bool(slots.any()):
            return x
        N = self.config.n_patches
        if patches is None or patches.shape[1:] != (N, self.config.patch_dim) or patches.size(0) != ids.size(0):
            got = None if patches is None else tuple(patches.shape)
            raise ConfigError(f"image slots need patches of shape ({ids.size(0)}, {N}, {self.config.patch_dim}), "
                              f"got {got}")  # fmt: skip
        if bool((slots.sum(1) != N).any()):
            raise ConfigError(f"every row with an image must hold exactly {N} image slots")
        emb = self.patch(patches) + self.patch_pos.weight  # (B, N, C)
        return x.masked_scatter(slots[..., None], emb.to(x.dtype))  # row-major: row b's slots take emb[b]

    def forward(
        self,
        ids: torch.Tensor,
        patches: torch.Tensor | None = None,
        cache=None,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """ids (B, T), patches (B, N, D) where ids hold image slots -> logits (B, T, V)."""
        x = self.embed(ids, patches)
        return self.gpt(ids, cache=cache, positions=positions, attention_mask=attention_mask, last_only=last_only,
                        inputs_embeds=x)  # fmt: skip

    def make_cache(self, batch: int, max_len: int, dtype=None, device=None):
        return self.gpt.make_cache(batch, max_len, dtype, device)

    def with_patches(self, patches: torch.Tensor) -> Prompted:
        """This model with one image per prompt bound to it: what the generation engine decodes from."""
        return Prompted(self, patches)


class Prompted(nn.Module):
    """A Gato whose prompts' image slots take ``patches`` (B, N, D): the generation engine's
    contract (``model(ids, cache, positions, attention_mask, last_only)``, ``make_cache``,
    ``config.block_size``). The engine prefills each prompt in one call, so the slots all come
    at once; later calls carry generated text only."""

    def __init__(self, model: Gato, patches: torch.Tensor):
        super().__init__()
        self.model, self.patches, self.config = model, patches, model.config

    def forward(self, ids, cache=None, positions=None, attention_mask=None, last_only=False):
        has = bool((ids == self.config.image_id).any())
        return self.model(ids, self.patches if has else None, cache, positions, attention_mask, last_only)

    def make_cache(self, batch: int, max_len: int, dtype=None, device=None):
        return self.model.make_cache(batch, max_len, dtype, device)


__all__ = ["Gato", "GatoConfig", "Prompted"]
