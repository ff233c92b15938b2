"""Scalar heads on a decoder: a reward model (one score per sequence) and a value head
(one value per token, for PPO).

Axes: B batch, T time, C model dim.

A :class:`ScoreModel` is a decoder (any model that returns a ``ModelOutput`` with
``hidden_states`` when asked, and keeps its final norm as ``ln_f``, as GPT does) and one
linear map of its last, normalised hidden state to a scalar::

    h = LN_f(decoder(ids).hidden_states[-1])     (B, T, C)
    v = h w  (+ b)                               (B, T)   per-token values (PPO's V(s_t))
    r = v[b, last real token of row b]           (B,)     the reward of the whole sequence

The reward model of InstructGPT (Ouyang et al. 2022, arXiv:2203.02155, section 3.5) is such a
model read at the last token; Hugging Face's ``GPT2ForSequenceClassification`` with one label
is the same map (``score`` has no bias), so its weights load here key for key.

Its state dict is ``backbone.*`` (the decoder's own keys) and ``head.*``: a reward run's
checkpoint holds both, and :func:`genlab.runs.load_run` rebuilds it from ``config.yaml``'s
``head`` section.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class HeadConfig:
    kind: str = "score"  # score: one scalar per position (reward at the last token, values per token)
    bias: bool = False  # Hugging Face's sequence-classification head has none


HEAD_KINDS = ("score",)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1/0 mask -> (B,) index of each row's last real token (right or left padding)."""
    T = attention_mask.size(1)
    cols = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)  # (B, T)
    return (cols * attention_mask.long()).argmax(dim=1)


def positions_of(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting real tokens only, so a left-padded row computes what it would alone: (B, T)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class ScoreModel(nn.Module):
    """A decoder with a scalar head: ``values`` per token, ``score`` per sequence."""

    def __init__(self, backbone: nn.Module, cfg: HeadConfig | None = None):
        super().__init__()
        cfg = cfg or HeadConfig()
        if cfg.kind not in HEAD_KINDS:
            raise ValueError(f"head kind '{cfg.kind}' is not one of {list(HEAD_KINDS)}")
        self.head_config = cfg
        self.backbone = backbone
        self.config = backbone.config  # block_size, vocab_size: what data and decoding read
        width = backbone.config.n_embd
        self.head = nn.Linear(width, 1, bias=cfg.bias)
        nn.init.normal_(self.head.weight, 0.0, 1.0 / (width + 1) ** 0.5)
        if cfg.bias:
            nn.init.zeros_(self.head.bias)

    def hidden(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's last hidden state after its final norm: (B, T, C)."""
        positions = positions_of(attention_mask) if attention_mask is not None else None
        out = self.backbone(idx, positions=positions, attention_mask=attention_mask, hidden_states=True)
        h = out.hidden_states[-1]  # (B, T, C), before the final norm
        norm = getattr(self.backbone, "ln_f", None)
        return norm(h) if norm is not None else h

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token values (B, T)."""
        return self.head(self.hidden(idx, attention_mask)).squeeze(-1)  # (B, T)

    def shard_units(self) -> list[nn.Module]:
        """FSDP groups (training/parallel.py): the backbone's blocks; the head stays in the root group."""
        units = getattr(self.backbone, "shard_units", None)
        return units() if units is not None else []

    def score(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One scalar per sequence, read at its last real token: (B,)."""
        values = self(idx, attention_mask)  # (B, T)
        if attention_mask is None:
            return values[:, -1]
        last = last_token_index(attention_mask)  # (B,)
        return values.gather(1, last[:, None]).squeeze(1)


__all__ = ["HEAD_KINDS", "HeadConfig", "ScoreModel", "last_token_index", "positions_of"]
