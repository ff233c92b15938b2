"""Knowledge distillation, DistilBERT style (Sanh et al. 2019, arXiv:1910.01108).

Axes: B batch, T time (tokens), V vocabulary or K classes, D hidden size, N selected positions.

A student s is trained on the teacher t's soft targets (Hinton et al. 2015, arXiv:1503.02531),
the hard labels and, for DistilBERT, the direction of the teacher's hidden states::

    L = alpha_ce  * T^2 * (1/N) sum_n KL(softmax(t_n / T) || softmax(s_n / T))
      + alpha_mlm * CE(s, labels)
      + alpha_cos * (1/M) sum_m (1 - cos(h^s_m, h^t_m))

The temperature T > 1 softens both distributions so the small probabilities the teacher gives
to the wrong tokens ("dark knowledge") carry signal; T^2 keeps the gradient of the soft term at
the scale of the hard one as T changes. DistilBERT's weights are alpha_ce = 5, alpha_mlm = 2,
alpha_cos = 1 with T = 2. Positions: for token logits (B, T, V) the soft term averages over the
non-padding positions (``attention_mask``; DistilBERT's default) or, with
``restrict_to_masked=True``, over the labelled ones only; the cosine term over the non-padding
positions. For sequence-classification logits (B, K) every row is a position and ``labels``
are class ids. The teacher is detached: gradients reach the student only.

The student is initialised from the teacher by taking one layer out of two
(:func:`init_student_from_teacher`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.models.outputs import aux_metric
from genlab.objectives.masked_lm import IGNORE_INDEX


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 2.0,
    alpha_ce: float = 5.0,
    alpha_mlm: float = 2.0,
    alpha_cos: float = 1.0,
    restrict_to_masked: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Soft-target KL + hard-label CE + hidden-state cosine -> (loss, {"distill_kl", "distill_ce", "distill_cos"}).

    student_logits, teacher_logits (B, T, V) with labels (B, T) (-100 where unlabelled), or (B, K)
    with labels (B,) class ids; labels None drops the CE term. student_hidden, teacher_hidden
    (B, T, D), both or neither (None drops the cosine term). attention_mask (B, T), 1 for real
    tokens (None: all). The metrics are the unweighted terms.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (DistilBERT uses 2.0)")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ"
        )
    teacher_logits = teacher_logits.detach()
    V = student_logits.shape[-1]
    tokens = student_logits.dim() == 3
    keep = None  # (B, T) positions of the soft term; None: every row of the flattened logits
    if tokens and restrict_to_masked:
        if labels is None:
            raise ValueError("restrict_to_masked=True needs the MLM labels")
        keep = labels != IGNORE_INDEX
    elif tokens and attention_mask is not None:
        keep = attention_mask.bool()
    s = student_logits.reshape(-1, V) if keep is None else student_logits[keep]  # (N, V)
    t = teacher_logits.reshape(-1, V) if keep is None else teacher_logits[keep]

    # KL(p_t || p_s) = sum_v p_t (log p_t - log p_s), mean over positions ("batchmean").
    log_ps = F.log_softmax(s.float() / temperature, dim=-1)
    log_pt = F.log_softmax(t.float() / temperature, dim=-1)
    if s.shape[0] > 0:
        kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * temperature**2
    else:
        kl = student_logits.sum() * 0.0
    loss = alpha_ce * kl
    metrics = {"distill_kl": kl.item()}

    if labels is not None and alpha_mlm != 0:
        flat = labels.reshape(-1)
        if bool((flat != IGNORE_INDEX).any()):
            ce = F.cross_entropy(student_logits.reshape(-1, V).float(), flat, ignore_index=IGNORE_INDEX)
        else:
            ce = student_logits.sum() * 0.0
        loss = loss + alpha_mlm * ce
        metrics["distill_ce"] = ce.item()

    if (student_hidden is None) != (teacher_hidden is None):
        raise ValueError("pass both student_hidden and teacher_hidden for the cosine term, or neither")
    if student_hidden is not None and alpha_cos != 0:
        if student_hidden.shape != teacher_hidden.shape:
            raise ValueError(
                f"student hidden {tuple(student_hidden.shape)} and teacher hidden {tuple(teacher_hidden.shape)} "
                "differ; project the student's states to the teacher's size first"
            )
        hs, ht = student_hidden.float(), teacher_hidden.detach().float()
        if attention_mask is not None:
            hs, ht = hs[attention_mask.bool()], ht[attention_mask.bool()]  # (M, D)
        cos = 1.0 - F.cosine_similarity(hs.reshape(-1, hs.shape[-1]), ht.reshape(-1, ht.shape[-1]), dim=-1).mean()
        loss = loss + alpha_cos * cos
        metrics["distill_cos"] = cos.item()
    return loss, metrics


def student_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher layer each student layer copies: every k-th from 0, k = teacher_layers // student_layers.

    12 -> 6 gives [0, 2, 4, 6, 8, 10], one layer out of two as in DistilBERT's paper.
    """
    if not 0 < student_layers <= teacher_layers:
        raise ValueError(f"a student of {student_layers} layers cannot be taken from a teacher of {teacher_layers}")
    k = teacher_layers // student_layers
    return [i * k for i in range(student_layers)]


def init_student_from_teacher(
    teacher_state_dict: Mapping[str, torch.Tensor],
    teacher_layers: int,
    student_layers: int,
    layer_key_pattern: str = r"layers\.(\d+)\.",
    layer_map: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """The student's state dict: the teacher's, keeping layers ``layer_map`` renumbered 0, 1, ...

    Keys matching ``layer_key_pattern`` (its first group is the layer index) belong to a layer:
    student layer i takes teacher layer ``layer_map[i]`` (default :func:`student_layer_map`; the
    released DistilBERT used [0, 2, 4, 7, 9, 11]); the other layers are dropped. Every other key
    (embeddings, final norm, heads) is kept as is. The tensors are shared, not copied
    (``load_state_dict`` copies them into the student).
    """
    chosen = list(layer_map) if layer_map is not None else student_layer_map(teacher_layers, student_layers)
    if len(set(chosen)) != student_layers or not all(0 <= j < teacher_layers for j in chosen):
        raise ValueError(
            f"layer_map {chosen} must name {student_layers} different teacher layers in [0, {teacher_layers})"
        )
    pattern = re.compile(layer_key_pattern)
    if pattern.groups < 1:
        raise ValueError(f"layer_key_pattern {layer_key_pattern!r} needs a group capturing the layer index")
    found = {int(m.group(1)) for key in teacher_state_dict if (m := pattern.search(key))}
    if found != set(range(teacher_layers)):
        raise ValueError(
            f"layer_key_pattern {layer_key_pattern!r} finds layers {sorted(found)} in the teacher, "
            f"expected 0 .. {teacher_layers - 1}"
        )
    new_index = {j: i for i, j in enumerate(chosen)}
    student = {}
    for key, value in teacher_state_dict.items():
        m = pattern.search(key)
        if m is None:
            student[key] = value
        elif int(m.group(1)) in new_index:
            student[key[: m.start(1)] + str(new_index[int(m.group(1))]) + key[m.end(1) :]] = value
    return student


def sequence_distillation_loss(
    student: nn.Module,
    teacher: nn.Module,
    batch: dict,
    temperature: float = 2.0,
    alpha_soft: float = 5.0,
    alpha_hard: float = 2.0,
    alpha_cos: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`distillation_loss` of two sequence classifiers on a padded batch (``input_ids``,
    ``attention_mask``, ``labels``): the frozen ``teacher`` runs without gradients, the ``student``
    (the module the loss receives) on the same tokens; logits (B, K), last hidden states (B, T, D)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        t_out = teacher(ids, mask, heads=["sequence"])
    s_out = student(ids, mask, heads=["sequence"])
    loss, metrics = distillation_loss(
        s_out.logits, t_out.logits, batch["labels"], s_out.hidden, t_out.hidden, mask,
        temperature=temperature, alpha_ce=alpha_soft, alpha_mlm=alpha_hard, alpha_cos=alpha_cos,
    )  # fmt: skip
    return loss, {**metrics, **aux_metric(s_out)}  # an MoE student's balancing loss
