"""Environments through gymnasium: the known control tasks, a vectorised env that resumes exactly.

Axes: N environments (the vector), O observation size, A actions (discrete).

:class:`VecEnv` wraps gymnasium's ``SyncVectorEnv`` with autoreset disabled: it resets each
finished sub-environment itself, seeding episode ``k`` of environment ``i`` from
``SeedSequence([seed, i, k])``. The state of the whole vector is then small and plain: per
environment, the episode number and the actions taken since its reset. Restoring it resets each
environment with that episode's seed and replays the actions (gymnasium's environments are
deterministic given the seed and the actions), so a resumed run steps through exactly the same
states as an uninterrupted one, for any environment, Box2D included.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch

from genlab.core.errors import ConfigError


@dataclass(frozen=True)
class EnvSpec:
    solved: float  # mean return over 100 episodes that counts as solved (gymnasium's reward_threshold)
    needs: str = ""  # the module the environment needs beyond gymnasium's classic control


#: Known environments: discrete actions, vector observations.
ENVS = {
    "CartPole-v1": EnvSpec(solved=475.0),
    "Acrobot-v1": EnvSpec(solved=-100.0),
    "LunarLander-v3": EnvSpec(solved=200.0, needs="Box2D"),
}


def known_envs() -> list[str]:
    """The environment ids that can be made here (LunarLander only where Box2D is installed)."""
    return [k for k, s in ENVS.items() if not s.needs or importlib.util.find_spec(s.needs) is not None]


def check_env_id(env_id: str) -> EnvSpec:
    """The spec of a known environment; any other id is a one-line error listing the known ones."""
    if env_id not in known_envs():
        extra = "" if env_id not in ENVS else f" ({env_id} needs {ENVS[env_id].needs}: pip install 'gymnasium[box2d]')"
        raise ConfigError(f"unknown environment '{env_id}'{extra}; known: {', '.join(known_envs())}")
    return ENVS[env_id]


def _gym():
    try:
        import gymnasium
    except ImportError as e:  # an optional dependency: the rl extra
        raise ConfigError("reinforcement learning needs gymnasium: pip install 'genlab[rl]'") from e
    return gymnasium


def make_env(env_id: str, render_mode: str | None = None):
    """One gymnasium environment (with its TimeLimit), checked to be known."""
    check_env_id(env_id)
    return _gym().make(env_id, render_mode=render_mode)


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    """The seed of episode ``episode`` of environment ``env_index``: distinct and reproducible."""
    return int(np.random.SeedSequence([seed, env_index, episode]).generate_state(1)[0])


class VecEnv:
    """N copies of one environment stepped together; finished episodes restart at once.

    :meth:`step` returns ``(obs, reward, terminated, truncated, final_obs)``: ``obs`` (N, O) is
    what the policy sees next (a new episode's first observation where one ended), ``final_obs``
    (N, O) the observation that ended each episode (equal to ``obs`` elsewhere).
    """

    def __init__(self, env_id: str, n_envs: int, seed: int):
        if n_envs < 1:
            raise ConfigError(f"env.n_envs must be at least 1, got {n_envs}")
        gym = _gym()
        self.env_id, self.n, self.seed = env_id, n_envs, seed
        check_env_id(env_id)
        self.vec = gym.vector.SyncVectorEnv(
            [lambda: gym.make(env_id) for _ in range(n_envs)],
            autoreset_mode=gym.vector.AutoresetMode.DISABLED,
            copy=False,
        )
        space = self.vec.single_action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(f"{env_id} has {type(space).__name__} actions; genlab's agents handle discrete ones")
        self.n_actions = int(space.n)
        self.obs_dim = int(np.prod(self.vec.single_observation_space.shape))
        self.episodes = np.zeros(n_envs, dtype=np.int64)  # episode number of each environment
        self.actions: list[list[int]] = [[] for _ in range(n_envs)]  # since each environment's reset
        obs, _ = self.vec.reset(seed=[episode_seed(seed, i, 0) for i in range(n_envs)])
        self.obs = np.array(obs, dtype=np.float32).reshape(n_envs, self.obs_dim)  # (N, O)

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        obs, reward, terminated, truncated, _ = self.vec.step(actions)
        obs = np.array(obs, dtype=np.float32).reshape(self.n, self.obs_dim)  # (N, O)
        final = obs.copy()
        done = terminated | truncated
        for i in range(self.n):
            self.actions[i].append(int(actions[i]))
        if done.any():
            for i in np.flatnonzero(done):
                self.episodes[i] += 1
                self.actions[i] = []
            seeds = [episode_seed(self.seed, i, int(k)) for i, k in enumerate(self.episodes)]
            first, _ = self.vec.reset(seed=seeds, options={"reset_mask": done})
            obs[done] = np.asarray(first, dtype=np.float32).reshape(self.n, self.obs_dim)[done]
        self.obs = obs
        return obs, np.asarray(reward, dtype=np.float32), terminated, truncated, final

    # --- exact resume --------------------------------------------------------------------

    def state_dict(self) -> dict:
        longest = max((len(a) for a in self.actions), default=0)
        actions = torch.full((self.n, longest), -1, dtype=torch.long)  # (N, L), -1 pads
        for i, a in enumerate(self.actions):
            actions[i, : len(a)] = torch.tensor(a, dtype=torch.long)
        return {"env_id": self.env_id, "seed": self.seed, "episodes": torch.from_numpy(self.episodes.copy()),
                "actions": actions}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if state["env_id"] != self.env_id or int(state["actions"].shape[0]) != self.n:
            raise ConfigError(
                f"the checkpoint's environments ({state['env_id']} x {int(state['actions'].shape[0])}) are not "
                f"this run's ({self.env_id} x {self.n})"
            )
        self.seed = int(state["seed"])
        self.episodes = state["episodes"].numpy().astype(np.int64).copy()
        obs = np.zeros((self.n, self.obs_dim), dtype=np.float32)
        seeds = [episode_seed(self.seed, i, int(k)) for i, k in enumerate(self.episodes)]
        self.vec.reset(seed=seeds)  # clears the vector's flags; each environment is replayed below
        for i, env in enumerate(self.vec.envs):
            o, _ = env.reset(seed=seeds[i])
            self.actions[i] = [int(a) for a in state["actions"][i].tolist() if a >= 0]
            for a in self.actions[i]:
                o, *_ = env.step(a)
            obs[i] = np.asarray(o, dtype=np.float32).reshape(-1)
        self.obs = obs

    def close(self) -> None:
        self.vec.close()


__all__ = ["ENVS", "EnvSpec", "VecEnv", "check_env_id", "episode_seed", "known_envs", "make_env"]
