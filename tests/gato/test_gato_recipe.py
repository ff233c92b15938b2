"""The gato recipe end to end: a tiny generalist over text, Fashion-MNIST and CartPole, exact resume,
its evaluation and the one-line error for a prompt of a modality it was not trained on."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genlab.core.config import merge
from genlab.core.errors import ConfigError, GenlabError
from genlab.recipes import list_recipes, load_recipe, run_task
from genlab.recipes.gato import GatoRecipe, Mixture, check, evaluate_gato, layout_example, load_gato, play
from genlab.training.checkpoint import find_checkpoint

QUIET = {"progress": False, "tensorboard": False, "dtype": "fp32"}


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """A (weak) CartPole PPO expert: 10 gradient steps of a tiny rl run."""
    out = tmp_path_factory.mktemp("gato-expert") / "cartpole"
    run_task({"task": "rl", "env": {"id": "CartPole-v1", "n_envs": 2, "seed": 1},
              "agent": {"algo": "ppo", "n_steps": 16, "epochs": 2, "minibatch_size": 16},
              "eval": {"episodes": 2, "noise": []},
              "train": {"max_steps": 10, "eval_interval": 5, "log_interval": 5, **QUIET}}, run_dir=out)  # fmt: skip
    return out


def tiny(text, expert, **over) -> dict:
    base = {
        "task": "gato",
        "tasks": {"text": 1.0, "fashion": 1.0, "CartPole-v1": 1.0},
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64},
        "text": {"source": str(text), "vocab_size": 300, "batch_size": 4},
        "images": {"batch_size": 8, "train_limit": 64, "val_images": 8, "fashion_val": 100},
        "control": {"experts": {"CartPole-v1": str(expert)}, "episodes": 3, "val_episodes": 2, "prompt_tokens": 24,
                    "batch_size": 4},
        "eval": {"episodes": 2, "fashion": 8, "max_new_tokens": 4},
        "train": {"max_steps": 8, "decay_steps": 8, "eval_interval": 4, "eval_batches": 1, "log_interval": 2,
                  "warmup_steps": 2, **QUIET},
    }  # fmt: skip
    return merge(base, over)


def weights(run_dir):
    return load_file(str(find_checkpoint(run_dir / "checkpoints", "last") / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, expert, tiny_text):
    root = tmp_path_factory.mktemp("gato")
    run_task(tiny(tiny_text, expert), run_dir=root / "a")
    run_task(tiny(tiny_text, expert, train={"max_steps": 5}), run_dir=root / "b")  # stops mid-mixture
    run_task(tiny(tiny_text, expert), run_dir=root / "b", resume=True)
    return root


def test_a_tiny_generalist_resumes_exactly(runs):
    a, b = weights(runs / "a"), weights(runs / "b")
    assert a.keys() == b.keys() and "patch.weight" in a and "gpt.blocks.0.attn.qkv.weight" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra, rb = (json.loads((runs / d / "results.json").read_text()) for d in "ab")
    assert ra["metrics"] == rb["metrics"]
    assert set(ra["metrics"]) == {"text_val_loss", "fashion_accuracy", "CartPole-v1_return"}
    assert ra["task_steps"] == {"text": 3, "fashion": 3, "CartPole-v1": 2}  # 8 steps, a third each
    assert ra["data_kinds"]["CartPole-v1"].startswith("generated") and ra["data_kinds"]["fashion"].startswith("real")
    rows = [json.loads(line) for line in (runs / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss_CartPole-v1" in r and "val_loss_text" in r for r in rows)


def test_genlab_eval_of_a_gato_run_reports_every_task(runs):
    out = evaluate_gato(runs / "a", episodes=2)
    assert out["task"] == "gato" and set(out["metrics"]) == {"text_val_loss", "fashion_accuracy", "CartPole-v1_return"}
    assert 0 <= out["metrics"]["fashion_accuracy"] <= 1 and out["metrics"]["CartPole-v1_return"] >= 8
    ra = json.loads((runs / "a" / "results.json").read_text())
    assert out["metrics"]["text_val_loss"] == pytest.approx(ra["metrics"]["text_val_loss"])


def test_a_prompt_of_a_modality_the_run_was_not_trained_on(runs, tiny_text, expert, tmp_path):
    with pytest.raises(GenlabError, match=r"no action tokens for 'Acrobot-v1'; it knows: text, image, CartPole-v1$"):
        evaluate_gato(runs / "a", tasks=["Acrobot-v1"])
    g = load_gato(runs / "a")
    with pytest.raises(GenlabError, match="no action tokens for 'LunarLander-v3'"):
        play(g.model, g.layout, "LunarLander-v3", [np.zeros(24, np.int64)], 1, 0)
    # a text-and-control run has no image slots
    run_task(tiny(tiny_text, expert, tasks={"fashion": 0.0}, train={"max_steps": 2}), run_dir=tmp_path / "tc")
    with pytest.raises(GenlabError, match=r"not trained on image inputs; it knows: text, CartPole-v1$"):
        evaluate_gato(tmp_path / "tc", tasks=["fashion"])


def test_the_mixture_gives_each_task_its_share_of_steps():
    shares = {"text": 0.5, "fashion": 0.25, "CartPole-v1": 0.25}
    assert Mixture.schedule(shares, 1000) == {"text": 500, "fashion": 250, "CartPole-v1": 250}
    assert Mixture.schedule({"a": 1 / 3, "b": 2 / 3}, 7) == {"a": 2, "b": 5}


def test_the_recipe_parses_and_checks_its_tasks():
    assert "gato/generalist" in list_recipes()
    from genlab.core.config import from_dict

    r = from_dict(GatoRecipe, load_recipe("gato/generalist"))
    check(r)
    assert r.layout.bins == 1024 and r.layout.mu == 100 and r.layout.M == 256
    with pytest.raises(ConfigError, match="unknown gato task 'atari'"):
        check(from_dict(GatoRecipe, {"tasks": {"atari": 1.0}}))
    with pytest.raises(ConfigError, match="at least one task"):
        check(from_dict(GatoRecipe, {"tasks": {"text": 0.0}}))


def test_the_layout_rendering_of_a_run_and_of_the_hand_made_episode(runs):
    lines = layout_example().splitlines()
    assert lines[1:4] == ["obs    [522, 778, 265, 1033] ~ [9.96e-05, 1.61, -1.61, 253]", "|      [1034]",
                          "act    [1037] CartPole-v1:1"]  # fmt: skip
    text = layout_example(runs / "a", "CartPole-v1", 3)
    assert text.startswith("3 steps of a CartPole-v1 expert episode") and text.count("|      [") == 3
    assert "image  16 patch slots" in text and "' what is this? -> sneaker<|endoftext|>'" in text


def test_playing_in_a_batch_equals_playing_alone(runs):
    """Rows leave the batch (and the KV cache) as their episodes end, and the context refills past
    block_size: episode 0 of a batch of 5 plays exactly as it does alone."""
    g = load_gato(runs / "a")
    from genlab.recipes.gato import demo_prompt, expert_episodes, prompt_steps

    _, val = expert_episodes("CartPole-v1", g.recipe)
    kp, _ = prompt_steps(g.layout, "CartPole-v1", g.recipe)
    prompts = [demo_prompt(e, g.layout, "CartPole-v1", kp) for e in val]
    batch = play(g.model, g.layout, "CartPole-v1", prompts, 5, seed=3)
    alone = play(g.model, g.layout, "CartPole-v1", prompts, 1, seed=3)
    assert batch[0] == alone[0] and len(set(batch.tolist())) > 1
    assert batch.max() * 6 + len(prompts[0]) > g.model.config.block_size  # some episode outlived the context


def test_a_missing_expert_is_trained_with_its_rl_recipe_under_the_data_dir(tmp_path, monkeypatch):
    import yaml

    from genlab.core.config import from_dict
    from genlab.core.paths import data_dir
    from genlab.recipes import gato

    recipe = {"task": "rl", "env": {"id": "CartPole-v1", "n_envs": 2, "seed": 1},
              "agent": {"algo": "ppo", "n_steps": 16, "epochs": 1, "minibatch_size": 32},
              "eval": {"episodes": 1, "noise": []}, "train": {"max_steps": 2, "eval_interval": 2, **QUIET}}  # fmt: skip
    path = tmp_path / "tiny-ppo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    monkeypatch.setitem(gato.EXPERT_RECIPES, "CartPole-v1", str(path))
    r = from_dict(GatoRecipe, {"control": {"episodes": 2, "val_episodes": 1}})
    train_eps, val_eps = gato.expert_episodes("CartPole-v1", r, log=lambda *a: None)
    assert (data_dir() / "gato" / "experts" / "tiny-ppo.yaml" / "config.yaml").is_file()
    assert len(train_eps) == 2 and len(val_eps) == 1 and train_eps[0]["obs"].shape[1] == 4
    assert len(list((data_dir() / "gato" / "trajectories").glob("CartPole-v1-*.npz"))) == 1
    again, _ = gato.expert_episodes("CartPole-v1", r)  # from the cache
    assert np.array_equal(again[0]["actions"], train_eps[0]["actions"])
