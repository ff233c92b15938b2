"""An RL run directory back into its policy (what ``genlab play`` and behaviour cloning read).

The run directory is the one every family writes (:mod:`genlab.runs`): ``config.yaml`` with an
``env`` section (``id``) and a ``policy`` section (:class:`~genlab.rl.policy.PolicyConfig`), and
``checkpoints/`` whose ``model.safetensors`` is the :class:`~genlab.rl.policy.ActorCritic`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from genlab.core.config import from_dict
from genlab.core.errors import RunDirError
from genlab.rl.envs import check_env_id, make_env
from genlab.rl.policy import ActorCritic, PolicyConfig
from genlab.runs import checkpoint_path, read_run_config
from genlab.training.checkpoint import load_weights


class LoadedAgent(NamedTuple):
    policy: ActorCritic  # in eval mode
    env_id: str
    config: dict


def build_policy(env_id: str, cfg: PolicyConfig) -> ActorCritic:
    """An untrained policy sized for ``env_id``'s observations and actions."""
    env = make_env(env_id)
    try:
        return ActorCritic(int(env.observation_space.shape[0]), int(env.action_space.n), cfg)
    finally:
        env.close()


def load_agent(run_dir: str | os.PathLike, checkpoint: str = "best") -> LoadedAgent:
    """The policy of an RL run (``best``, falling back to ``last`` while the run has no best)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if "env" not in config or "policy" not in config:
        raise RunDirError(f"{run_dir} is not a reinforcement-learning run (its config has no env / policy section)")
    env_id = config["env"]["id"]
    check_env_id(env_id)
    policy = build_policy(env_id, from_dict(PolicyConfig, config["policy"]))
    load_weights(policy, checkpoint_path(run_dir, checkpoint) / "model.safetensors")
    return LoadedAgent(policy.eval(), env_id, config)


__all__ = ["LoadedAgent", "build_policy", "load_agent"]
