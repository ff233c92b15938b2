"""Policy-gradient objectives, written once: PPO for RLHF (tokens) and for control (CartPole).

Axes: B batch (sequences or environments), T time (tokens or environment steps).
Every function takes an optional (B, T) ``mask`` of valid steps (1) and padding (0).

Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438, eq. 16)::

    delta_t = r_t + gamma V(s_{t+1}) (1 - done_t) - V(s_t)
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1}
    R_t     = A_t + V(s_t)                           the value target (lambda-return)

The clipped surrogate of PPO (Schulman et al. 2017, arXiv:1707.06347, eq. 7), minimised::

    rho_t = exp(log pi(a_t|s_t) - log pi_old(a_t|s_t))
    L^CLIP = -E_t[ min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t) ]

and the clipped value loss of the PPO reference implementations (OpenAI baselines ppo2)::

    L^V = 1/2 E_t[ max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2) ]
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x`` over the steps where ``mask`` is 1 (all steps without a mask)."""
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8):
    """(x - mean) / std over the valid steps (the usual advantage normalisation)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if shift_mean else out + mean


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
    dones: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    next_value: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, both (B, T), from rewards and values (B, T).

    ``dones`` (B, T): the episode ended after step t (no bootstrap across it). ``mask`` (B, T):
    steps after a row's end are padding; the step before padding is terminal. ``next_value`` (B,):
    V of the state after the last step, for rollouts cut mid-episode (0 without it).
    """
    B, T = rewards.shape
    rewards, values = rewards.float(), values.float()
    valid = torch.ones_like(rewards) if mask is None else mask.float()
    rewards, values = rewards * valid, values * valid
    ended = torch.zeros_like(rewards) if dones is None else dones.float()
    # Value of the next state, zero after the end of a row or an episode.
    after = torch.zeros(B, 1, device=rewards.device) if next_value is None else next_value.float().view(B, 1)
    next_values = torch.cat([values[:, 1:], after], dim=1)  # (B, T)
    next_valid = torch.cat([valid[:, 1:], torch.ones(B, 1, device=rewards.device)], dim=1)  # (B, T)
    if next_value is None:
        next_valid[:, -1] = 0.0
    carry = (1.0 - ended) * next_valid  # (B, T): 1 where the next step belongs to the same episode
    deltas = rewards + gamma * next_values * carry - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(B, device=rewards.device)
    for t in range(T - 1, -1, -1):  # a recursion in time; vectorised over the batch
        running = deltas[:, t] + gamma * lam * carry[:, t] * running
        advantages[:, t] = running
    advantages = advantages * valid
    return advantages, (advantages + values) * valid


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip: float = 0.2,
    mask: torch.Tensor | None = None,
    clip_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped policy loss (module docstring), averaged over valid steps.

    ``advantages`` broadcasts against ``logp`` ((B, T), or (B, 1) for one advantage per sequence).
    ``clip_high`` (default ``clip``) is the upper clip, eps_high of DAPO (Yu et al. 2025).
    Returns the loss and metrics: ``clip_frac`` (share of clipped steps) and ``approx_kl``
    (k3 estimate of KL(old || new), Schulman 2020).
    """
    per_step, ratio = surrogate_per_step(logp, old_logp, advantages, clip, clip_high)
    with torch.no_grad():
        high = clip if clip_high is None else clip_high
        clipped = ((ratio < 1 - clip) | (ratio > 1 + high)).float()
        log_ratio = (logp - old_logp).float()
        approx_kl = torch.expm1(log_ratio) - log_ratio
    return masked_mean(per_step, mask), {
        "clip_frac": masked_mean(clipped, mask),
        "approx_kl": masked_mean(approx_kl, mask),
    }


def surrogate_per_step(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float, clip_high: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(rho A, clip(rho) A) per step, and rho: (B, T) each."""
    ratio = torch.exp(logp - old_logp)
    high = clip if clip_high is None else clip_high
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + high) * advantages
    return -torch.min(unclipped, clipped), ratio


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip: float = 0.2,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss (module docstring); ``clip <= 0`` gives the plain 1/2 (V - R)^2."""
    plain = (values - returns) ** 2
    if clip > 0:
        moved = old_values + torch.clamp(values - old_values, -clip, clip)
        worst = torch.max(plain, (moved - returns) ** 2)
        frac = masked_mean(((moved - returns) ** 2 > plain).float().detach(), mask)
    else:
        worst, frac = plain, torch.zeros(())
    return 0.5 * masked_mean(worst, mask), {"value_clip_frac": frac}


__all__ = ["clipped_surrogate", "clipped_value_loss", "gae", "masked_mean", "surrogate_per_step", "whiten"]
