"""Encoder pretraining losses: one training step of MLM, ELECTRA or CodeBERT, ``(models, batch) -> (loss, metrics)``.

Masking is dynamic (RoBERTa): each batch draws a fresh 15% mask (80/10/10) from the global torch
RNG (:func:`genlab.objectives.masked_lm.mask_tokens`), which checkpoints save and restore.

    mlm       L = L_MLM(encoder)                                   BERT / RoBERTa
    electra   L = L_MLM(generator) + lambda L_RTD(discriminator)    ELECTRA (Clark et al. 2020), lambda = 50
    codebert  L = L_MLM(encoder) + L_MLM(generator) + lambda L_RTD(encoder)

``models`` has ``model`` (the encoder, for ELECTRA the discriminator) and, for electra and
codebert, ``generator``: a small masked LM sharing the encoder's embeddings
(:func:`genlab.models.bert.electra_pair`). Its samples replace the masked tokens and the encoder
detects them at every position (:mod:`genlab.objectives.electra`). CodeBERT (Feng et al. 2020,
arXiv:2002.08155) trains one encoder with both objectives: MLM on the masked pair and
replaced-token detection on the corrupted pair (its paper's generators are n-gram models; here
the generator is learned, as in ELECTRA). Masked-LM logits are computed at the masked positions
only (N of them): the head runs on (N, C), not (B, T, C).

The discriminator is scored on the tokens that can be replaced: real (not padding) and not
special ([CLS], [SEP], ... never masked, so trivially "original"; the official ELECTRA code
scores them too, which only inflates the base rate). Its output bias starts at the prior
log-odds of a replacement (``PretrainLoss.prior_init``, :func:`init_detection`): with a zero bias
the discriminator collapses to its base rate (:mod:`genlab.objectives.electra`).
:func:`pretrain_scored_loss` also returns its logits and targets, for a validation's AUROC.

A mixture-of-experts encoder or generator (``model.moe.*``) reports its balancing loss as the
output's ``aux_loss``; each loss sums those of the models it ran into the metric ``aux_loss``,
which the training engine adds to what it backpropagates (the returned loss stays the task's).

Axes: B batch, T time (tokens), C width, V vocabulary, N masked positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.objectives.electra import detection_prior, electra_loss, replaced_token_detection
from genlab.objectives.masked_lm import IGNORE_INDEX, mask_tokens, masked_lm_loss

OBJECTIVES = ("mlm", "electra", "codebert")


@dataclass
class PretrainLoss:
    mask_rate: float = 0.15
    replace: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # [MASK] / random / keep
    disc_weight: float = 50.0  # lambda of replaced-token detection (ELECTRA's 50)
    temperature: float = 1.0  # of the generator's samples (> 1 leaves a token signal: electra.token_identity_bound)
    prior_init: bool = True  # the rtd head's output bias starts at log(r / (1 - r)), r = mask_rate; false: 0


def init_detection(model: nn.Module, lc: PretrainLoss) -> None:
    """Set the discriminator's rtd output bias to the prior log-odds of a replacement, with r the
    mask rate (a generator that starts near uniform replaces almost every masked token): see
    :func:`genlab.objectives.electra.detection_prior` for why. Nothing when ``lc.prior_init`` is false."""
    if lc.prior_init:
        with torch.no_grad():
            _plain(model).rtd.out.bias.fill_(detection_prior(lc.mask_rate))


def _plain(model: nn.Module) -> nn.Module:
    """The module inside DDP / torch.compile wrappers (for its heads, which are called directly)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def mlm_logits(
    model: nn.Module, inputs: torch.Tensor, batch: dict, selected: torch.Tensor, aux: list | None = None
) -> torch.Tensor:
    """Masked-LM logits (N, V) at the N selected positions only: the body through ``model`` (the
    module the loss receives), the head on the selected states. A mixture-of-experts body's
    balancing loss (the output's ``aux_loss``) is appended to ``aux`` when given."""
    out = model(inputs, batch["attention_mask"], batch["token_type_ids"], heads=())
    _collect(out, aux)
    return _plain(model).mlm(out.hidden[selected])  # (N, V)


def _collect(out, aux: list | None) -> None:
    if aux is not None and getattr(out, "aux_loss", None) is not None:
        aux.append(out.aux_loss)


def _with_aux(metrics: dict, aux: list) -> dict:
    """The metrics plus ``aux_loss`` (the sum of the models' balancing losses), which the training
    engine adds to the loss it backpropagates; the metrics alone for dense models."""
    return {**metrics, "aux_loss": sum(aux[1:], aux[0])} if aux else metrics


def pretrain_loss(
    objective: str, mask_id: int, special_ids: Sequence[int], vocab_size: int, lc: PretrainLoss
) -> Callable[[dict, dict], tuple[torch.Tensor, dict]]:
    """The loss of one pretraining step, ``(models, batch) -> (loss, metrics)`` (module docstring)."""
    scored = pretrain_scored_loss(objective, mask_id, special_ids, vocab_size, lc)

    def loss(models: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        value, metrics, _ = scored(models, batch)
        return value, metrics

    return loss


def pretrain_scored_loss(
    objective: str, mask_id: int, special_ids: Sequence[int], vocab_size: int, lc: PretrainLoss
) -> Callable[[dict, dict], tuple[torch.Tensor, dict, tuple[torch.Tensor, torch.Tensor] | None]]:
    """:func:`pretrain_loss` that also returns the discriminator's scores, ``(models, batch) -> (loss,
    metrics, detection)``: detection = (rtd logits (P,), targets (P,) 0/1) at the P scored
    positions (real, non-special tokens) for electra and codebert, None for mlm. What a
    validation pools to compute the discriminator's AUROC over many batches."""
    special = sorted(special_ids)

    def mask(batch: dict):
        inputs, labels = mask_tokens(
            batch["input_ids"], mask_id=mask_id, vocab_size=vocab_size, special_ids=special,
            attention_mask=batch["attention_mask"], rate=lc.mask_rate, replace=lc.replace,
        )  # fmt: skip
        return inputs, labels, labels != IGNORE_INDEX  # (B, T), (B, T), (B, T) bool

    def corrupt(gen: nn.Module, inputs, labels, selected, batch, aux: list):
        """The generator's MLM logits (N, V) and the discriminator's input: masked positions replaced
        by samples, with targets (B, T) = 1 where the token differs from the original."""
        gen_logits = mlm_logits(gen, inputs, batch, selected, aux)
        ids = batch["input_ids"]
        sampled, _ = replaced_token_detection(
            gen_logits, inputs[selected], labels[selected], ids[selected], temperature=lc.temperature
        )  # the objective's sampling, on the (N,) selected positions
        corrupted = inputs.clone()
        corrupted[selected] = sampled
        return gen_logits, corrupted, (corrupted != ids).float()

    def rtd(model: nn.Module, corrupted, batch, aux: list) -> torch.Tensor:
        out = model(corrupted, batch["attention_mask"], batch["token_type_ids"], heads=["rtd"])
        _collect(out, aux)
        return out.rtd_logits  # (B, T)

    def scored_positions(batch) -> torch.Tensor:
        """(B, T) bool: the real tokens that are not special ([CLS], [SEP]): the positions that can
        be replaced, where the discriminator's loss and metrics are taken."""
        ids = batch["input_ids"]
        return batch["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(special, device=ids.device))

    def detect(gen_logits, labels, disc, targets, batch):
        keep = scored_positions(batch)
        loss, metrics = electra_loss(gen_logits, labels, disc, targets, keep, lc.disc_weight)
        return loss, metrics, (disc[keep].detach().float(), targets[keep])

    def mlm(models, batch):
        inputs, labels, sel = mask(batch)
        aux: list = []
        loss, metrics = masked_lm_loss(mlm_logits(models["model"], inputs, batch, sel, aux), labels[sel])
        return loss, _with_aux(metrics, aux), None

    def electra(models, batch):
        inputs, labels, sel = mask(batch)
        aux: list = []
        gen_logits, corrupted, targets = corrupt(models["generator"], inputs, labels, sel, batch, aux)
        disc = rtd(models["model"], corrupted, batch, aux)
        loss, metrics, detection = detect(gen_logits, labels[sel], disc, targets, batch)
        return loss, _with_aux(metrics, aux), detection

    def codebert(models, batch):
        enc = models["model"]
        inputs, labels, sel = mask(batch)
        aux: list = []
        enc_mlm, metrics = masked_lm_loss(mlm_logits(enc, inputs, batch, sel, aux), labels[sel])
        gen_logits, corrupted, targets = corrupt(models["generator"], inputs, labels, sel, batch, aux)
        disc = rtd(enc, corrupted, batch, aux)
        rest, more, detection = detect(gen_logits, labels[sel], disc, targets, batch)
        return enc_mlm + rest, _with_aux({**metrics, **more}, aux), detection

    losses = {"mlm": mlm, "electra": electra, "codebert": codebert}
    if objective not in losses:
        raise ConfigError(f"unknown objective '{objective}'; choose from {list(OBJECTIVES)}")
    return losses[objective]
