"""Evaluation: the mean and standard deviation of the return over a fixed number of episodes.

Episodes are shared out in advance (environment i of N runs ``episodes // N`` of them, one more
while i < ``episodes % N``), so the set of evaluated episodes does not favour short ones, and
their seeds come from :func:`genlab.rl.envs.episode_seed`: the same evaluation for every agent.

Off the expert's state distribution: ``action_noise`` replaces each action by a uniformly random
one with that probability (the agent must recover from states its training never showed it),
``obs_noise`` adds N(0, sigma^2) noise to what the policy observes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from genlab.rl.envs import VecEnv
from genlab.rl.policy import ActorCritic

Act = Callable[[np.ndarray], np.ndarray]  # observations (N, O) -> actions (N,)


def greedy(policy: ActorCritic) -> Act:
    """The policy's most likely action for each observation."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.pi(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()

    return act


def run_episodes(
    act: Act,
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    n_envs: int = 10,
    action_noise: float = 0.0,
    obs_noise: float = 0.0,
) -> tuple[np.ndarray, int]:
    """The returns of ``episodes`` episodes (in a fixed order) and the environment steps they took."""
    n = max(1, min(n_envs, episodes))
    env = VecEnv(env_id, n, seed)
    quota = np.array([episodes // n + (i < episodes % n) for i in range(n)])
    returns: list[list[float]] = [[] for _ in range(n)]
    running = np.zeros(n)
    rng = np.random.default_rng(seed)
    steps = 0
    try:
        while any(len(r) < q for r, q in zip(returns, quota)):
            obs = env.obs
            if obs_noise:
                obs = obs + rng.normal(0.0, obs_noise, obs.shape).astype(np.float32)
            actions = np.asarray(act(obs))
            if action_noise:
                random = rng.random(n) < action_noise
                actions = np.where(random, rng.integers(0, env.n_actions, n), actions)
            _, reward, terminated, truncated, _ = env.step(actions)
            running += reward
            steps += sum(len(r) < q for r, q in zip(returns, quota))
            for i in np.flatnonzero(terminated | truncated):
                if len(returns[i]) < quota[i]:
                    returns[i].append(float(running[i]))
                running[i] = 0.0
    finally:
        env.close()
    return np.array([x for r in returns for x in r]), steps


def evaluate(act: Act | ActorCritic, env_id: str, episodes: int = 100, seed: int = 0, **noise) -> dict:
    """``{"return_mean", "return_std", "episodes", "env_steps"}`` of the greedy policy (or any ``act``)."""
    if isinstance(act, ActorCritic):
        act = greedy(act)
    returns, steps = run_episodes(act, env_id, episodes, seed, **noise)
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()), "episodes": len(returns),
            "env_steps": steps}  # fmt: skip


__all__ = ["Act", "evaluate", "greedy", "run_episodes"]
