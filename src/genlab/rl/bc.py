"""Behaviour cloning: supervised learning of the expert's actions from its trajectories.

Axes: M demonstration steps, B minibatch, O observation size, A actions.

The expert (a trained agent, greedy) plays ``episodes`` episodes; each visited state and the action
it chose become one labelled example, and the same :class:`~genlab.rl.policy.ActorCritic` network
learns them by cross-entropy (Pomerleau 1989, ALVINN; Ross et al. 2011, arXiv:1011.0686, on why
its errors compound off the expert's state distribution)::

    L = -E_{(s, a*) ~ expert}[ log pi(a* | s) ]

The environment steps it costs are the expert's demonstration steps (plus, to be fair, the
expert's own training, which the comparison reports beside it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genlab.rl.envs import VecEnv
from genlab.rl.evaluate import Act
from genlab.rl.policy import ActorCritic


def demonstrations(act: Act, env_id: str, episodes: int, seed: int, n_envs: int = 8) -> dict[str, torch.Tensor]:
    """``{"obs": (M, O), "actions": (M,), "returns": (episodes,)}`` from ``episodes`` whole episodes."""
    n = max(1, min(n_envs, episodes))
    env = VecEnv(env_id, n, seed)
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    done_count = [0] * n
    obs_list: list[np.ndarray] = []
    act_list: list[np.ndarray] = []
    returns, running = [], np.zeros(n)
    try:
        while any(d < q for d, q in zip(done_count, quota)):
            live = np.array([d < q for d, q in zip(done_count, quota)])
            obs = env.obs.copy()
            actions = np.asarray(act(obs))
            obs_list.append(obs[live])
            act_list.append(actions[live])
            _, reward, terminated, truncated, _ = env.step(actions)
            running += reward
            for i in np.flatnonzero(terminated | truncated):
                if done_count[i] < quota[i]:
                    returns.append(float(running[i]))
                    done_count[i] += 1
                running[i] = 0.0
    finally:
        env.close()
    return {"obs": torch.from_numpy(np.concatenate(obs_list)), "actions": torch.from_numpy(np.concatenate(act_list)),
            "returns": torch.tensor(returns)}  # fmt: skip


class DemoBatches:
    """Shuffled minibatches of demonstrations, epoch after epoch (the engine's data; resumes exactly)."""

    def __init__(self, demos: dict[str, torch.Tensor], batch_size: int, seed: int):
        self.obs, self.actions = demos["obs"], demos["actions"].long()
        self.batch_size = min(batch_size, len(self.actions))
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.actions), generator=self.generator)
        self.pos = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = torch.randperm(len(self.actions), generator=self.generator), 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return {"obs": self.obs[idx], "actions": self.actions[idx]}

    def state_dict(self) -> dict:
        return {"order": self.order, "pos": self.pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"], state["pos"]
        self.generator.set_state(state["generator"])


def bc_loss(policy: ActorCritic, batch: dict):
    """Cross-entropy of the policy against the expert's actions; accuracy as a metric."""
    logits = policy.pi(batch["obs"])  # (B, A)
    loss = F.cross_entropy(logits, batch["actions"])
    return loss, {"accuracy": (logits.argmax(-1) == batch["actions"]).float().mean().detach()}


__all__ = ["DemoBatches", "bc_loss", "demonstrations"]
