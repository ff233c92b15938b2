"""Direct preference optimisation (Rafailov et al. 2023, arXiv:2305.18290, eq. 7).

The policy is its own reward model: r(x, y) = beta log pi(y|x) / pi_ref(y|x), and the
Bradley-Terry loss on that implicit reward needs no sampling and no separate reward network::

    h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
    L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)

``eps`` (label smoothing) > 0 assumes a share eps of the labels are flipped (conservative DPO,
Mitchell 2023); eps = 0 is the paper's loss, TRL's ``loss_type="sigmoid"``.

A batch is the chosen rows then the rejected rows, prompt + answer: ``ids``,
``attention_mask`` and ``completion_mask`` (1 on the answer's tokens), each (2B, T).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.alignment.logprobs import sequence_logprobs


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sequence log-probs (B,) of the policy and the reference -> loss, metrics.

    Metrics: the implicit rewards beta * log-ratio of the chosen and rejected answers, their
    margin and the share of pairs where the chosen reward is higher.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    loss = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    with torch.no_grad():
        chosen_reward, rejected_reward = beta * chosen_ratio, beta * rejected_ratio
        metrics = {
            "reward_chosen": chosen_reward.mean(),
            "reward_rejected": rejected_reward.mean(),
            "reward_margin": (chosen_reward - rejected_reward).mean(),
            "reward_accuracy": (chosen_reward > rejected_reward).float().mean(),
        }
    return loss.mean(), metrics


@torch.no_grad()
def reference_logprobs(reference: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen reference's sequence log-probs of the chosen (B,) and rejected (B,) answers."""
    ids, attention_mask, completion_mask = batch[:3]
    return sequence_logprobs(reference, ids, completion_mask, attention_mask).chunk(2)


def dpo_step(policy: nn.Module, reference: nn.Module | None, batch, beta: float = 0.1, label_smoothing: float = 0.0):
    """The trainer's loss. batch = (ids, attention_mask, completion_mask) (2B, T) each, optionally followed
    by precomputed (ref_chosen, ref_rejected) (B,) each, in which case ``reference`` may be None."""
    ids, attention_mask, completion_mask = batch[:3]
    if len(batch) == 5:
        ref_chosen, ref_rejected = batch[3], batch[4]
    else:
        ref_chosen, ref_rejected = reference_logprobs(reference, batch)
    chosen, rejected = sequence_logprobs(policy, ids, completion_mask, attention_mask).chunk(2)
    return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta, label_smoothing)


__all__ = ["dpo_loss", "dpo_step", "reference_logprobs"]
