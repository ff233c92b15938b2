"""A tiny end-to-end chain on templated data: pretrain -> SFT -> reward -> DPO / GRPO / PPO,
exact resume of a stage, and the one-line errors of bad input.

The data is templated (hand-written element facts rendered into question/answer text), not real."""

import json

import pytest
import torch
from conftest import tiny_recipe

from genlab.core.config import load_yaml
from genlab.core.errors import DataError, TokenizerError
from genlab.models.heads import ScoreModel
from genlab.recipes import run_task
from genlab.runs import load_run
from genlab.serving.terminal import load_session
from genlab.tokenizers.chat import PLAIN_TEMPLATE, find_template

ELEMENTS = [("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
            ("sodium", "Na"), ("iron", "Fe"), ("copper", "Cu"), ("silver", "Ag"), ("gold", "Au"),
            ("lead", "Pb"), ("tin", "Sn")]  # fmt: skip
TRAIN = {"max_steps": 4, "batch_size": 2, "eval_interval": 2, "eval_batches": 2, "lr": 1e-3, "warmup_steps": 1}


def _lm(source, **train):
    recipe = tiny_recipe(source, **train)
    recipe["model"]["block_size"] = 64  # a question and its answer fit
    return recipe


def _q(name):
    return f"User: What is the symbol of {name}?\nAssistant:"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    text = "".join(f"{_q(n)} {s}\n" for n, s in ELEMENTS) * 4 + "I don't know. 0123456789\nSystem: \n"
    (root / "corpus.txt").write_text(text)
    run_task(_lm(root / "corpus.txt", max_steps=6), run_dir=root / "pretrain")
    convs = [{"messages": [{"role": "user", "content": f"What is the symbol of {n}?"},
                           {"role": "assistant", "content": s}]} for n, s in ELEMENTS]  # fmt: skip
    prefs = [{"prompt": f"What is the symbol of {n}?", "chosen": s, "rejected": "I don't know"} for n, s in ELEMENTS]
    questions = [{"prompt": f"What is the symbol of {n}?", "answer": s} for n, s in ELEMENTS]
    files = {
        "conv": _write(root / "conversations.jsonl", convs),
        "prefs": _write(root / "preferences.jsonl", prefs),
        "questions": _write(root / "questions.jsonl", questions),
    }
    return root, files


def _stage(task, init, path, run_dir, resume=False, **extra):
    train = {**TRAIN, "dtype": "fp32", "log_interval": 1, "progress": False, "tensorboard": False,
             **extra.pop("train", {})}  # fmt: skip
    recipe = {"task": task, "init": str(init), "data": {"path": str(path), "val_fraction": 0.25}, "train": train,
              "rollout": {"group_size": 2, "max_new_tokens": 4}, **extra}  # fmt: skip
    return run_task(recipe, run_dir=run_dir, resume=resume)


def test_sft_reward_dpo_grpo_ppo_chain(chain):
    root, f = chain
    _stage("chat-sft", root / "pretrain", f["conv"], root / "sft")
    sft, tok, cfg = load_run(root / "sft")
    assert cfg["task"] == "chat-sft" and sft.config.vocab_size == tok.vocab_size
    # a char-level init run has no role tokens: the stage chose the plain template and saved it
    assert find_template(root / "sft", tok) == PLAIN_TEMPLATE
    session = load_session(root / "sft", temperature=0.0, max_new_tokens=4)
    assert isinstance(session.answer("What is the symbol of iron?"), str)
    _stage("chat-reward", root / "sft", f["prefs"], root / "reward")
    rm, _, rcfg = load_run(root / "reward")
    assert isinstance(rm, ScoreModel) and rcfg["head"]["kind"] == "score"
    assert 0.0 <= json.loads((root / "reward" / "results.json").read_text())["best_val_accuracy"] <= 1.0
    dpo = _stage("chat-dpo", root / "sft", f["prefs"], root / "dpo")
    assert any("reward_margin" in row for row in dpo.history)
    grpo = _stage("chat-grpo", root / "sft", f["questions"], root / "grpo")
    assert any("kl" in row for row in grpo.history) and any("val_reward" in row for row in grpo.history)
    ppo = _stage("chat-ppo", root / "sft", f["questions"], root / "ppo", reward=str(root / "reward"))
    assert any("policy_loss" in row and "value_loss" in row for row in ppo.history)
    policy, _, _ = load_run(root / "ppo")
    assert not isinstance(policy, ScoreModel)  # the run's model is the policy
    ppo_verifiable = _stage("chat-ppo", root / "sft", f["questions"], root / "ppo-v")
    assert ppo_verifiable.step == TRAIN["max_steps"]


@pytest.mark.parametrize(
    "task,data",
    # chat-ppo drifted after a resume until the decoding copies of layers/linear.py were retired by
    # optimizer steps too: fused AdamW does not bump the version counter, so rollouts after the first
    # update sampled from stale weights in the uninterrupted run and from fresh ones after the resume.
    [("chat-sft", "conv"), ("chat-reward", "prefs"), ("chat-dpo", "prefs"), ("chat-grpo", "questions"),
     ("chat-ppo", "questions")],
)  # fmt: skip
def test_a_stage_resumes_exactly(chain, tmp_path, task, data):
    root, f = chain
    if not (root / "sft").exists():
        _stage("chat-sft", root / "pretrain", f["conv"], root / "sft")
    extra = {"reward": str(root / "sft-reward")} if task == "chat-ppo" else {}
    if extra and not (root / "sft-reward").exists():
        _stage("chat-reward", root / "sft", f["prefs"], root / "sft-reward")
    full = _stage(task, root / "sft", f[data], tmp_path / "full", train={"max_steps": 4, "decay_steps": 4}, **extra)
    _stage(task, root / "sft", f[data], tmp_path / "half", train={"max_steps": 2, "decay_steps": 4}, **extra)
    # as `genlab train --resume` does: the run's own config.yaml, with the overrides
    saved = load_yaml(tmp_path / "half" / "config.yaml")
    saved["train"]["max_steps"] = 4
    resumed = run_task(saved, run_dir=tmp_path / "half", resume=True)
    a, _, _ = load_run(tmp_path / "full", "last")
    b, _, _ = load_run(tmp_path / "half", "last")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=k)
    assert resumed.step == full.step == 4


def test_malformed_preferences_line_is_a_one_line_error(chain, tmp_path):
    root, f = chain
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f["prefs"].read_text().splitlines()[0] + '\n{"prompt": "x", "chosen": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON") as e:
        _stage("chat-dpo", root / "pretrain", bad, tmp_path / "run")
    assert "\n" not in str(e.value)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"prompt": "x", "chosen": "y"}\n')
    with pytest.raises(DataError, match=r"missing.jsonl:1: needs string field\(s\) \['rejected'\]"):
        _stage("chat-reward", root / "pretrain", missing, tmp_path / "run2")


def test_reward_run_of_another_tokenizer_is_a_one_line_error(chain, tmp_path):
    root, f = chain
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{_q(n)} {s}\n" for n, s in ELEMENTS) * 4 + "I don't know ~^|{}")  # another character set
    run_task(_lm(other, max_steps=1), run_dir=tmp_path / "other-lm")
    _stage("chat-reward", tmp_path / "other-lm", f["prefs"], tmp_path / "other-rm", train={"max_steps": 1})
    with pytest.raises(TokenizerError, match="another tokenizer") as e:
        _stage("chat-ppo", root / "pretrain", f["questions"], tmp_path / "ppo", reward=str(tmp_path / "other-rm"))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["chat/sft", "chat/reward", "chat/dpo", "chat/grpo", "chat/ppo"])
def test_every_chat_config_parses_and_asks_for_init(name):
    from genlab.core.config import from_dict
    from genlab.core.errors import ConfigError
    from genlab.recipes import TASKS, load_recipe
    from genlab.recipes.chat import ChatRecipe, train

    recipe = load_recipe(name)
    assert recipe["task"] in TASKS and from_dict(ChatRecipe, recipe).task == recipe["task"]
    with pytest.raises(ConfigError, match="init=RUN_DIR"):
        train(recipe, "unused")
