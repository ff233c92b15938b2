"""Policy-gradient agents over vectorised environments: REINFORCE with a baseline, and PPO.

Axes: N environments, T steps per rollout, B samples of a minibatch (from the N*T), A actions.

Both agents alternate between collecting a rollout of T steps in each of the N environments with
the current policy and descending a loss on it. :class:`Rollouts` is that loop written as the
training engine's data iterator: each ``next`` is one minibatch, and a new rollout is collected
when the last one is used up, so the engine's steps are gradient steps and its checkpoints,
metrics, evaluation and exact resume apply unchanged (the iterator's ``state_dict`` holds the
environments, the rollout buffer, the minibatch order and its own RNG).

Advantages come from GAE (:func:`genlab.objectives.policy.gae`); an episode cut by the time
limit is bootstrapped with V of its last observation (r_T += gamma V(s_T)), one cut by the
rollout's end with V of the next state.

REINFORCE with a learned baseline (Williams 1992, "Simple statistical gradient-following
algorithms"; Sutton & Barto 2018, sec. 13.4), one pass over each rollout::

    G_t = sum_k gamma^k r_{t+k}            (GAE with lambda = 1: the Monte Carlo return)
    L   = -E_t[ log pi(a_t|s_t) (G_t - V(s_t)) ] + c_v 1/2 E_t[ (V(s_t) - G_t)^2 ]

PPO (Schulman et al. 2017, arXiv:1707.06347): several epochs of minibatches over each rollout
with the clipped surrogate and value loss shared with RLHF (:mod:`genlab.objectives.policy`)::

    L = L^CLIP(pi; A) + c_v L^V(V; R) - c_e E_t[ H(pi(.|s_t)) ]

``vf_coef`` multiplies 1/2 (V - R)^2, so 1.0 here equals stable-baselines3's vf_coef 0.5 on (V - R)^2.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from genlab.core.errors import ConfigError
from genlab.objectives.policy import clipped_surrogate, clipped_value_loss, gae, masked_mean, surrogate_per_step, whiten
from genlab.rl.envs import VecEnv
from genlab.rl.policy import ActorCritic, action_logp, entropy


@dataclass
class AgentConfig:
    algo: str = "ppo"  # ppo | reinforce (ALGOS)
    n_steps: int = 32  # steps per environment per rollout (T)
    gamma: float = 0.98
    lam: float = 0.8  # GAE lambda; REINFORCE needs 1.0 (the Monte Carlo return)
    epochs: int = 20  # passes over each rollout (REINFORCE: 1)
    minibatch_size: int = 256  # samples per gradient step; 0: the whole rollout (REINFORCE: 0)
    clip: float = 0.2  # PPO's epsilon
    clip_value: float = 0.0  # PPO's value clip; 0: the plain 1/2 (V - R)^2
    vf_coef: float = 1.0
    ent_coef: float = 0.0
    normalize_advantages: bool = True  # whiten the advantages of each minibatch


def check_agent(a: AgentConfig, n_envs: int) -> None:
    if a.algo not in ALGOS:
        raise ConfigError(f"unknown agent.algo '{a.algo}'; choose from {sorted(ALGOS)}")
    rollout = n_envs * a.n_steps
    if a.n_steps < 1 or a.epochs < 1 or not 0 <= a.minibatch_size <= rollout:
        raise ConfigError(
            f"agent.n_steps and agent.epochs must be >= 1 and agent.minibatch_size in [0, {rollout}] "
            f"(env.n_envs x agent.n_steps), got {a.n_steps}, {a.epochs}, {a.minibatch_size}"
        )
    if a.algo == "reinforce" and (a.epochs != 1 or a.minibatch_size not in (0, rollout) or a.lam != 1.0):
        raise ConfigError("agent.algo=reinforce is on-policy Monte Carlo: set agent.epochs=1, agent.minibatch_size=0, "
                          "agent.lam=1.0")  # fmt: skip


def rollout_targets(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    final_values: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (N, T) of a rollout: GAE, with an episode that the time limit
    ``truncated`` at step t bootstrapped from ``final_values`` (V of the state it was cut in,
    r_t += gamma V(s_{t+1})) and one that ``terminated`` not at all; ``next_value`` (N,) is V of
    the state after the rollout's last step."""
    rewards = rewards + gamma * final_values * truncated
    dones = ((terminated + truncated) > 0).float()
    return gae(rewards, values, gamma, lam, dones=dones, next_value=next_value)


class Rollouts:
    """The engine's data iterator for an on-policy agent (module docstring)."""

    KEYS = ("obs", "actions", "logp", "values", "advantages", "returns")

    def __init__(self, env: VecEnv, policy: ActorCritic, cfg: AgentConfig, seed: int):
        self.env, self.policy, self.cfg = env, policy, cfg
        self.size = env.n * cfg.n_steps  # samples per rollout
        self.minibatch = cfg.minibatch_size or self.size
        self.generator = torch.Generator().manual_seed(seed)  # actions and minibatch order
        self.buffer: dict[str, torch.Tensor] | None = None  # (N*T, ...) each
        self.epoch, self.pos = 0, 0
        self.order = torch.arange(self.size)
        self.env_steps = 0  # environment steps so far (all N environments)
        self.running = np.zeros(env.n)  # return of each environment's current episode
        self.recent: deque[float] = deque(maxlen=100)  # returns of the last finished episodes
        self.episodes = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        new = 0
        if self.buffer is None or self.pos >= self.size:
            self.pos, self.epoch = 0, self.epoch + 1
            if self.buffer is None or self.epoch >= self.cfg.epochs:
                self.collect()
                self.epoch, new = 0, self.size
            self.order = torch.randperm(self.size, generator=self.generator)
        idx = self.order[self.pos : self.pos + self.minibatch]
        self.pos += self.minibatch
        batch = {k: v[idx] for k, v in self.buffer.items()}
        batch["new_steps"] = new  # environment steps collected for this batch (the engine counts them)
        # The losses report their metrics on a rollout's last minibatch only (tiny networks: the
        # metrics' extra tensor ops would cost a tenth of every gradient step).
        batch["measure"] = self.pos >= self.size and self.epoch == self.cfg.epochs - 1
        if batch["measure"]:
            batch["env_steps"] = float(self.env_steps)
            if self.recent:
                batch["train_return"] = float(np.mean(self.recent))
        return batch

    @torch.no_grad()
    def collect(self) -> None:
        """T steps in each of the N environments with the current policy; then GAE."""
        N, T, c = self.env.n, self.cfg.n_steps, self.cfg
        obs = torch.zeros(N, T, self.env.obs_dim)  # (N, T, O)
        actions = torch.zeros(N, T, dtype=torch.long)
        logp, values, rewards, terminated, truncated, final_values = (torch.zeros(N, T) for _ in range(6))
        for t in range(T):
            o = torch.from_numpy(self.env.obs)  # (N, O)
            a, lp, v = self.policy.act(o, self.generator)
            _, r, term, trunc, final = self.env.step(a.numpy())
            cut = trunc & ~term
            if cut.any():  # the time limit cut these episodes: V of the state it cut them in
                final_values[cut, t] = self.policy.value(torch.from_numpy(final[cut]))
            obs[:, t], actions[:, t], logp[:, t], values[:, t] = o, a, lp, v
            rewards[:, t] = torch.from_numpy(r)
            terminated[:, t], truncated[:, t] = (
                torch.from_numpy(term.astype(np.float32)),
                torch.from_numpy(cut.astype(np.float32)),
            )
            self._count_episodes(r, term | trunc)
        next_value = self.policy.value(torch.from_numpy(self.env.obs))  # (N,)
        advantages, returns = rollout_targets(rewards, values, terminated, truncated, final_values, next_value,
                                              c.gamma, c.lam)  # fmt: skip
        self.env_steps += N * T
        flat = lambda x: x.reshape(N * T, *x.shape[2:])  # (N, T, ...) -> (N*T, ...)
        self.buffer = {k: flat(v) for k, v in zip(self.KEYS, (obs, actions, logp, values, advantages, returns))}

    def _count_episodes(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self.running += rewards  # the environment's rewards: training returns, for the log
        for i in np.flatnonzero(done):
            self.recent.append(float(self.running[i]))
            self.running[i] = 0.0
            self.episodes += 1

    # --- exact resume --------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "env": self.env.state_dict(),
            "buffer": self.buffer,
            "epoch": self.epoch,
            "pos": self.pos,
            "order": self.order,
            "generator": self.generator.get_state(),
            "env_steps": self.env_steps,
            "running": torch.from_numpy(self.running.copy()),
            "recent": torch.tensor(list(self.recent), dtype=torch.float64),
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict) -> None:
        self.env.load_state_dict(state["env"])
        self.buffer = state["buffer"]
        self.epoch, self.pos, self.order = state["epoch"], state["pos"], state["order"]
        self.generator.set_state(state["generator"])
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        self.running = state["running"].numpy().copy()
        self.recent = deque(state["recent"].tolist(), maxlen=100)


def _entropy(logp_all: torch.Tensor, batch: dict, coef: float) -> tuple[torch.Tensor | float, torch.Tensor | None]:
    """The entropy bonus (no graph through it when it is not trained) and the mean entropy when measured."""
    if not coef and not batch.get("measure", True):
        return 0.0, None
    h = entropy(logp_all).mean()
    return coef * h if coef else 0.0, h.detach()


def _metrics(batch: dict, pg, value_loss, h, extra: dict) -> dict:
    """What a loss reports, on a rollout's last minibatch (:meth:`Rollouts.__next__`)."""
    if not batch.get("measure", True):
        return {}
    out = {"policy_loss": pg.detach(), "value_loss": value_loss.detach(), "entropy": h, **extra}
    out["env_steps"] = batch.get("env_steps", 0.0)
    if "train_return" in batch:
        out["train_return"] = batch["train_return"]
    return out


def reinforce_loss(policy: ActorCritic, batch: dict, cfg: AgentConfig):
    """REINFORCE with a learned baseline (module docstring); returns the loss and metrics."""
    logits, values = policy(batch["obs"])
    logp, logp_all = action_logp(logits, batch["actions"])
    adv = whiten(batch["advantages"]) if cfg.normalize_advantages else batch["advantages"]
    pg = -masked_mean(logp * adv)  # the score-function estimator
    value_loss = 0.5 * masked_mean((values - batch["returns"]) ** 2)
    bonus, h = _entropy(logp_all, batch, cfg.ent_coef)
    return pg + cfg.vf_coef * value_loss - bonus, _metrics(batch, pg, value_loss, h, {})


def ppo_loss(policy: ActorCritic, batch: dict, cfg: AgentConfig):
    """PPO's loss (module docstring) through the clipped surrogate and value loss RLHF uses."""
    logits, values = policy(batch["obs"])
    logp, logp_all = action_logp(logits, batch["actions"])
    adv = whiten(batch["advantages"]) if cfg.normalize_advantages else batch["advantages"]
    if batch.get("measure", True):
        pg, m = clipped_surrogate(logp, batch["logp"], adv, cfg.clip)
    else:  # the same loss without its metrics
        pg, m = masked_mean(surrogate_per_step(logp, batch["logp"], adv, cfg.clip)[0]), {}
    value_loss, vm = clipped_value_loss(values, batch["values"], batch["returns"], cfg.clip_value)
    bonus, h = _entropy(logp_all, batch, cfg.ent_coef)
    extra = {**m, **(vm if cfg.clip_value > 0 else {})}
    return pg + cfg.vf_coef * value_loss - bonus, _metrics(batch, pg, value_loss, h, extra)


#: agent.algo -> its loss over (policy, minibatch, config)
ALGOS = {"ppo": ppo_loss, "reinforce": reinforce_loss}

__all__ = ["ALGOS", "AgentConfig", "Rollouts", "check_agent", "rollout_targets", "ppo_loss", "reinforce_loss"]
