"""The RL recipes end to end: a run directory like every family's, exact resume, learning, BC, play."""

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genlab import cli
from genlab.core.config import from_dict, merge
from genlab.core.errors import ConfigError
from genlab.recipes import list_recipes, load_recipe, run_task
from genlab.recipes.rl import RLRecipe, check, resolve_schedule
from genlab.rl.evaluate import evaluate
from genlab.rl.runs import load_agent
from genlab.training.checkpoint import find_checkpoint

QUIET = {"progress": False, "tensorboard": False}


def tiny(**over) -> dict:
    """PPO on CartPole, 2 environments x 16 steps, 4 gradient steps per rollout."""
    base = {"task": "rl", "env": {"id": "CartPole-v1", "n_envs": 2, "seed": 1},
            "agent": {"algo": "ppo", "n_steps": 16, "epochs": 2, "minibatch_size": 16},
            "eval": {"episodes": 2, "noise": []},
            "train": {"max_steps": 10, "eval_interval": 5, "log_interval": 2, "decay_steps": 10, **QUIET}}  # fmt: skip
    return merge(base, over)


def weights(run_dir):
    return load_file(str(find_checkpoint(run_dir / "checkpoints", "last") / "model.safetensors"))


def test_resume_is_exact_environments_and_rollout_buffer_included(tmp_path):
    run_task(tiny(), run_dir=tmp_path / "a")
    run_task(tiny(train={"max_steps": 5}), run_dir=tmp_path / "b")  # stops mid-rollout, mid-episode
    run_task(tiny(), run_dir=tmp_path / "b", resume=True)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra = json.loads((tmp_path / "a" / "results.json").read_text())
    rb = json.loads((tmp_path / "b" / "results.json").read_text())
    assert ra["env_steps"] == rb["env_steps"] == 3 * 32 and ra["train_episodes"] == rb["train_episodes"]
    assert ra["test_return_mean"] == rb["test_return_mean"]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A tiny PPO agent: rl/cartpole-ppo for 3,072 environment steps (fixed seeds, no early stop)."""
    out = tmp_path_factory.mktemp("rl") / "cartpole-ppo"
    over = {"total_env_steps": 3072, "eval": {"episodes": 10, "interval_env_steps": 1024, "noise": [0.25]},
            "train": {"target": 0, **QUIET}}  # fmt: skip
    recipe = merge(load_recipe("rl/cartpole-ppo"), over)
    run_task(recipe, run_dir=out)
    return out


def test_ppo_beats_a_random_policy_on_cartpole(ppo_run):
    rng = np.random.default_rng(0)
    random = evaluate(lambda obs: rng.integers(0, 2, len(obs)), "CartPole-v1", 10, seed=20_000)
    results = json.loads((ppo_run / "results.json").read_text())
    assert results["env_steps"] == 3072 and results["test_episodes"] == 10
    assert results["test_return_mean"] > random["return_mean"] + 50, (results["test_return_mean"], random)


def test_rl_run_directory_is_like_every_familys(ppo_run):
    assert (ppo_run / "config.yaml").is_file() and (ppo_run / "checkpoints" / "best.json").is_file()
    rows = [json.loads(line) for line in (ppo_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_return" in r]
    assert [r["env_steps"] for r in evals] == [1024, 2048, 3072]
    assert any("train_return" in r and "clip_frac" in r and "items_per_s" in r for r in rows)
    results = json.loads((ppo_run / "results.json").read_text())
    for key in ("env", "algo", "env_steps_per_s", "solved", "solved_threshold", "test_return_std", "mfu"):
        assert key in results, key
    assert results["data_kind"].startswith("generated") and "random_actions_0.25" in results["off_distribution"]
    agent = load_agent(ppo_run)
    assert agent.env_id == "CartPole-v1" and agent.policy.n_actions == 2 and not agent.policy.training


def test_behaviour_cloning_of_the_ppo_agent(ppo_run, tmp_path):
    recipe = {"task": "rl-bc", "bc": {"expert": str(ppo_run), "episodes": 2},
              "eval": {"episodes": 5, "noise": [0.25]},
              "train": {"max_steps": 200, "batch_size": 64, "lr": 3e-3, "eval_interval": 100, "log_interval": 10,
                        **QUIET}}  # fmt: skip
    run_task(recipe, run_dir=tmp_path / "bc")
    r = json.loads((tmp_path / "bc" / "results.json").read_text())
    assert r["algo"] == "bc" and r["demo_episodes"] == 2 and r["demo_env_steps"] > 0
    assert set(r["off_distribution"]) == {"clone", "expert"}
    rows = [json.loads(line) for line in (tmp_path / "bc" / "metrics.jsonl").read_text().splitlines()]
    accuracy = [row["accuracy"] for row in rows if "accuracy" in row]
    assert accuracy[-1] > 0.8  # it learns the expert's actions
    assert load_agent(tmp_path / "bc").policy.obs_dim == 4


def genlab(capsys, *args):
    old = sys.argv
    sys.argv = ["genlab", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def test_play_renders_a_gif_and_prints_the_returns(ppo_run, tmp_path, capsys):
    gif = tmp_path / "out.gif"
    code, out, err = genlab(capsys, "play", ppo_run, "--episodes", "1", "--gif", gif, "--every", "5")
    assert code == 0, err
    assert "episode 1: return" in out and gif.is_file()
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames > 1 and im.size == (300, 200)


def test_unknown_env_id_from_the_cli_is_one_line(capsys, tmp_path):
    code, _, err = genlab(capsys, "train", "rl/cartpole-ppo", "env.id=Pong-v5", "--out", tmp_path / "x")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "unknown environment 'Pong-v5'" in lines[0] and "CartPole-v1" in lines[0]
    assert not (tmp_path / "x").exists()


def test_every_rl_recipe_parses_and_its_schedule_resolves():
    names = [n for n in list_recipes() if n.startswith("rl/")]
    assert {"rl/cartpole-ppo", "rl/cartpole-reinforce", "rl/acrobot-ppo", "rl/cartpole-bc"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        if recipe["task"] == "rl":
            r = from_dict(RLRecipe, recipe)
            check(r)
            t = resolve_schedule(r)
            assert t.max_steps > 0 and t.eval_interval > 0 and t.target != 0
    bad = from_dict(RLRecipe, merge(load_recipe("rl/cartpole-ppo"), {"eval": {"interval_env_steps": 1000}}))
    with pytest.raises(ConfigError, match="multiple of a rollout"):
        resolve_schedule(bad)
