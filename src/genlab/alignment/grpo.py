"""Group-relative policy optimisation (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300, eq. 3).

G completions o_1..o_G of each prompt are scored; each one's advantage is its reward
relative to its group, so no value model is needed::

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)          same A_i for every token of o_i

and the loss is PPO's clipped surrogate plus a KL penalty to the frozen reference, estimated
per token with Schulman's unbiased, always-positive k3 (as DeepSeekMath and TRL)::

    rho_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)
    KL_t  = pi_ref/pi - log(pi_ref/pi) - 1
    l_t   = -min(rho_t A_i, clip(rho_t, 1 - eps_low, 1 + eps_high) A_i) + beta KL_t

``kl_ratio_correction`` weights KL_t by rho_t: the samples come from pi_old, so rho_t KL_t is the
importance-sampled estimate of the KL under pi (TRL's ``use_bias_correction_kl``; it changes nothing
on the first, on-policy pass, where rho_t = 1).

``loss_type`` "grpo" averages over each completion's tokens, then over completions (the
paper); "bnpo" averages over all completion tokens of the batch (TRL's "bnpo", and its
"dapo" for one batch). Axes: N completions, T - 1 token positions (see :mod:`.logprobs`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from genlab.alignment.logprobs import token_logprobs
from genlab.core.errors import ConfigError
from genlab.objectives.policy import masked_mean, surrogate_per_step

LOSS_TYPES = ("grpo", "bnpo")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(N,) rewards, N = prompts x group_size in prompt-major order -> (N,) advantages."""
    groups = rewards.float().view(-1, group_size)  # (prompts, G)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        std = groups.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(groups[:, :1])
        centred = centred / (std + eps)
    return centred.view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = log pi_ref - log pi (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.04,
    clip: float = 0.2,
    clip_high: float | None = None,
    loss_type: str = "grpo",
    kl_ratio_correction: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token log-probs (N, T') of the policy, the sampling policy and the reference, advantages (N,),
    the completion mask (N, T') -> loss, metrics (kl, clip_frac)."""
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"grpo loss_type must be one of {list(LOSS_TYPES)}, got '{loss_type}'")
    mask = mask.to(logp.dtype)
    per_token, ratio = surrogate_per_step(logp, old_logp, advantages[:, None], clip, clip_high)  # (N, T')
    kl = k3_kl(logp, ref_logp) if (beta != 0.0 and ref_logp is not None) else torch.zeros_like(logp)
    per_token = per_token + beta * (kl * ratio if kl_ratio_correction else kl)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    else:
        loss = masked_mean(per_token, mask)
    with torch.no_grad():
        high = clip if clip_high is None else clip_high
        clipped = ((ratio < 1 - clip) | (ratio > 1 + high)).float()
        metrics = {"kl": masked_mean(kl.detach(), mask), "clip_frac": masked_mean(clipped, mask)}
    return loss, metrics


def grpo_step(policy: nn.Module, batch, beta: float = 0.04, clip: float = 0.2, clip_high: float | None = None,
              loss_type: str = "grpo", kl_ratio_correction: bool = False):  # fmt: skip
    """The trainer's loss. batch = (ids, attention_mask, completion_mask) (N, T), old_logp and ref_logp
    (N, T - 1), advantages (N,): what the chat-grpo rollouts produce. ``old_logp`` None means one
    pass per rollout (the sampling policy is the current one: rho = 1, its gradient kept), which saves
    a forward pass."""
    ids, attention_mask, completion_mask, old_logp, ref_logp, advantages = batch
    logp = token_logprobs(policy, ids, attention_mask)  # (N, T-1)
    if old_logp is None:
        old_logp = logp.detach()
    loss, metrics = grpo_loss(logp, old_logp, ref_logp, advantages, completion_mask[:, 1:], beta, clip, clip_high,
                              loss_type, kl_ratio_correction)  # fmt: skip
    return loss, metrics


__all__ = ["LOSS_TYPES", "group_advantages", "grpo_loss", "grpo_step", "k3_kl"]
