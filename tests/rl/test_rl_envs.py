"""Environments: the known ids, one-line errors, and a vectorised env that resumes exactly."""

import numpy as np
import pytest

from genlab.core.errors import ConfigError, GenlabError
from genlab.rl.envs import VecEnv, check_env_id, episode_seed, known_envs


def test_unknown_env_id_is_one_line_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as e:
        check_env_id("Pong-v5")
    msg = str(e.value)
    assert "\n" not in msg and "Pong-v5" in msg
    assert "CartPole-v1" in msg and "Acrobot-v1" in msg
    assert {"CartPole-v1", "Acrobot-v1"} <= set(known_envs())
    assert check_env_id("CartPole-v1").solved == 475.0 and check_env_id("Acrobot-v1").solved == -100.0


def test_episode_seeds_are_distinct_and_reproducible():
    seeds = {episode_seed(0, i, k) for i in range(4) for k in range(50)}
    assert len(seeds) == 200 and episode_seed(3, 1, 7) == episode_seed(3, 1, 7)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1"])
def test_vec_env_restores_mid_episode_and_steps_identically(env_id):
    rng = np.random.default_rng(0)
    a = VecEnv(env_id, 3, seed=5)
    for _ in range(60):  # several CartPole episodes end and restart on the way
        a.step(rng.integers(0, a.n_actions, 3))
    assert a.episodes.sum() > 0 or env_id == "Acrobot-v1"
    b = VecEnv(env_id, 3, seed=99)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.obs, b.obs)
    for _ in range(80):
        act = rng.integers(0, a.n_actions, 3)
        out_a, out_b = a.step(act), b.step(act)
        for x, y in zip(out_a, out_b):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.episodes, b.episodes)


def test_vec_env_refuses_another_envs_state():
    state = VecEnv("CartPole-v1", 2, 0).state_dict()
    with pytest.raises(GenlabError, match="not this run's"):
        VecEnv("Acrobot-v1", 2, 0).load_state_dict(state)
    with pytest.raises(ConfigError, match="n_envs"):
        VecEnv("CartPole-v1", 0, 0)
