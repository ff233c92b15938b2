"""What a sequence model returns when it returns more than its logits.

A model's plain ``forward`` returns the logits tensor (B, T, V), as it always has. Asked
for more, it returns a :class:`ModelOutput` whose fields are filled by whoever computes
them:

- ``logits``: the model itself, always.
- ``hidden_states``: the model, when asked for them: the residual stream after each layer,
  one (B, T, C) tensor per layer, for probes, distillation and the studio's views.
- ``aux_loss``: any part of the model that adds a training signal of its own, summed into
  one scalar: a mixture-of-experts router's load-balancing loss (Shazeer et al. 2017,
  arXiv:1701.06538; Fedus et al. 2021, arXiv:2101.03961), a value head's regression loss
  for PPO, a reward head's loss. An objective passes it on as the metric ``aux_loss``,
  which the training engine adds to the loss it backpropagates.

Axes: B batch, T time, C channels (the model width), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # one (B, T, C) per layer
    aux_loss: torch.Tensor | None = None  # a scalar, already weighted, added to the training loss


def logits_of(out: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The logits of a model's output: the tensor itself, or a ModelOutput's ``logits``."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, ModelOutput):
        return out.logits
    raise TypeError(f"expected a logits tensor or a ModelOutput, got {type(out).__name__}")


def aux_metric(out) -> dict[str, torch.Tensor]:
    """``{"aux_loss": out.aux_loss}`` when a model's output carries one (an MoE model's balancing
    loss), else ``{}``: what a fine-tuning objective merges into its metrics so the training engine
    backpropagates it, as the pretraining objectives do."""
    aux = getattr(out, "aux_loss", None)
    return {} if aux is None else {"aux_loss": aux}
