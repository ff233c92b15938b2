"""PPO for language models (Ouyang et al. 2022, arXiv:2203.02155, eq. 2; Ziegler et al. 2019,
arXiv:1909.08593): a frozen reference, a KL penalty per token, a value head, GAE and the clipped
objective of :mod:`genlab.objectives.policy`.

Each completion token y_t is an action; its reward is the per-token KL penalty, plus the
sequence's score (a reward model's, or a verifiable check's) on its last token::

    r_t = -beta (log pi_old(y_t) - log pi_ref(y_t)) + [t = last] score
    A_t, R_t = GAE(r, V_old; gamma, lambda)          (whitened A over the batch's completion tokens)
    L = L^CLIP(pi; A) + c_v L^V(V; R)

Values are read at the position that predicts the token (the state before the action), so
every tensor lines up with ``ids[:, 1:]``: (N, T - 1). The value model is a
:class:`genlab.models.heads.ScoreModel` (initialised from the reward model or the policy).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genlab.alignment.logprobs import token_logprobs
from genlab.objectives.policy import clipped_surrogate, clipped_value_loss, gae, whiten


def kl_penalised_rewards(
    scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (N, T'): -beta (logp - ref_logp) on the completion, + score at its last token.
    Also returns the per-token KL estimate (logp - ref_logp, masked)."""
    mask = mask.to(logp.dtype)
    kl = (logp - ref_logp) * mask  # (N, T')
    rewards = -beta * kl
    cols = torch.arange(mask.size(1), device=mask.device).expand_as(mask)
    last = (cols * mask.long()).argmax(dim=1)  # (N,) last completion token
    rewards = rewards.scatter_add(1, last[:, None], scores.to(rewards.dtype)[:, None])
    return rewards, kl


def token_values(value_model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """V(state before token t) for t >= 1: (N, T - 1)."""
    return value_model(ids, attention_mask)[:, :-1]


@torch.no_grad()
def ppo_targets(
    scores: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, old_values: torch.Tensor,
    mask: torch.Tensor, beta: float = 0.05, gamma: float = 1.0, lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(advantages, returns, kl) each (N, T') for one rollout batch."""
    rewards, kl = kl_penalised_rewards(scores, old_logp, ref_logp, mask, beta)
    advantages, returns = gae(rewards, old_values, gamma, lam, mask=mask)
    return whiten(advantages, mask) * mask, returns, kl


def ppo_policy_step(policy: nn.Module, batch, clip: float = 0.2):
    """The policy phase's loss. batch = (ids, attention_mask, completion_mask, old_logp, advantages,
    old_values, returns)."""
    ids, attention_mask, completion_mask, old_logp, advantages = batch[:5]
    logp = token_logprobs(policy, ids, attention_mask)
    return clipped_surrogate(logp, old_logp, advantages, clip, completion_mask[:, 1:])


def ppo_value_step(value_model: nn.Module, batch, clip: float = 0.2, coef: float = 0.5):
    """The value phase's loss, weighted by ``coef`` (c_v)."""
    ids, attention_mask, completion_mask, _, _, old_values, returns = batch
    values = token_values(value_model, ids, attention_mask)
    loss, metrics = clipped_value_loss(values, old_values, returns, clip, completion_mask[:, 1:])
    return coef * loss, metrics


__all__ = ["kl_penalised_rewards", "ppo_policy_step", "ppo_targets", "ppo_value_step", "token_values"]
