"""The policy and value network of every agent: two MLPs over the observation.

Axes: B batch (environments or samples), O observation size, A actions.

    logits = pi(s)   (B, A)      a categorical policy over the discrete actions
    value  = V(s)    (B,)        the baseline / critic

Separate networks (no shared trunk), tanh hidden layers and orthogonal initialisation with gain
sqrt(2) (0.01 on the policy's output, 1 on the value's), as in the PPO reference
implementations (Engstrom et al. 2020, arXiv:2005.12729, "Implementation Matters", sec. 3).
Behaviour cloning trains the same network's policy half from demonstrations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.errors import ConfigError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass
class PolicyConfig:
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"  # tanh | relu


def mlp(sizes: list[int], activation: str, out_gain: float) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown policy.activation '{activation}'; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """A categorical policy and a value function over vector observations."""

    def __init__(self, obs_dim: int, n_actions: int, cfg: PolicyConfig | None = None):
        super().__init__()
        cfg = cfg or PolicyConfig()
        self.cfg, self.obs_dim, self.n_actions = cfg, obs_dim, n_actions
        self.pi = mlp([obs_dim, *cfg.hidden, n_actions], cfg.activation, out_gain=0.01)
        self.v = mlp([obs_dim, *cfg.hidden, 1], cfg.activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, A) and values (B,)."""
        return self.pi(obs), self.v(obs).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)  # (B,)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False):
        """Actions (B,), their log-probabilities (B,) and the values (B,): a sample from pi, or its mode."""
        logits, value = self(obs)
        logp_all = F.log_softmax(logits, dim=-1)  # (B, A)
        if deterministic:
            action = logits.argmax(-1)
        else:
            action = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
        return action, logp_all.gather(-1, action[:, None]).squeeze(-1), value


def action_logp(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a|s) (B,) of the taken actions, and log pi(.|s) (B, A)."""
    logp_all = F.log_softmax(logits, dim=-1)  # (B, A)
    return logp_all.gather(-1, actions[:, None].long()).squeeze(-1), logp_all


def entropy(logp_all: torch.Tensor) -> torch.Tensor:
    """H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s), (B,), from log pi(.|s) (B, A)."""
    return -(logp_all.exp() * logp_all).sum(-1)


__all__ = ["ActorCritic", "PolicyConfig", "action_logp", "entropy", "mlp"]
