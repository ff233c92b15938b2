"""`genlab pipeline chat` on tiny data made here (templated element facts and FAQ-like pairs, not
real): every stage a chat run that `genlab chat` and the server open, the table, skipping finished
stages, an exact resume of an interrupted one, and the budget check."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from fastapi.testclient import TestClient

from genlab.core.config import load_yaml, save_yaml
from genlab.core.errors import ConfigError
from genlab.data.chat import faq_preferences
from genlab.recipes import run_task
from genlab.recipes.pipeline import (
    STAGES,
    TABLE_FILE,
    Data,
    load_config,
    minimum_budget,
    parse_budget,
    plan,
    run_pipeline,
)
from genlab.recipes.runner import RESULTS_FILE
from genlab.runs import load_run
from genlab.tokenizers.chat import ROLE_TOKEN_TEMPLATE, TEMPLATE_FILE, find_template

ELEMENTS = [("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
            ("sodium", "Na"), ("iron", "Fe"), ("copper", "Cu"), ("silver", "Ag"), ("gold", "Au"),
            ("lead", "Pb"), ("tin", "Sn"), ("zinc", "Zn"), ("neon", "Ne"), ("argon", "Ar")]  # fmt: skip
SPLITS = ("test", "validation", "train", "train", "train")


def _data(cfg) -> Data:
    """Conversations of four FAQ sources, checkable questions and FAQ preferences (templated)."""
    convs, qa = [], []
    for s, source in enumerate(("python-faq", "python-glossary", "perlfaq", "debian-faq", "chatterbot")):
        for i in range(10):
            q, a = f"What does {source} item {i} say?", f"Item {i} of {source} says {'yes' if i % 2 else 'no'}."
            split = SPLITS[(i + s) % 5]
            convs.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                          "source": source, "split": split, "item": str(i)})  # fmt: skip
            qa.append({"prompt": q, "answer": a, "source": source, "split": split, "item": str(i)})
    question = lambda i, n, sym: {"prompt": f"What is the chemical symbol of {n}?", "answer": sym, "check": "exact",
                                  "source": "elements", "split": SPLITS[i % 5], "item": n}  # fmt: skip
    questions = [question(i, n, sym) for i, (n, sym) in enumerate(ELEMENTS)]
    text = "".join(f"The chemical symbol of {n} is {sym}. " for n, sym in ELEMENTS) * 20
    text += " ".join(r["prompt"] + " " + r["answer"] for r in qa) * 5
    return Data(cfg, convs, questions, faq_preferences(qa), text)


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "chat"
    cfg = load_config(tiny=True)
    table = run_pipeline(out, 2.0, cfg, data=_data(cfg))
    return out, cfg, table


def test_tiny_pipeline_writes_chat_runs_and_the_table(piped):
    out, cfg, table = piped
    for stage in STAGES:
        assert (out / stage / RESULTS_FILE).is_file() and (out / stage / TEMPLATE_FILE).is_file(), stage
        assert find_template(out / stage, None) == ROLE_TOKEN_TEMPLATE  # the chat BPE has the role tokens
    assert load_yaml(out / "ppo" / "config.yaml")["reward"] == str(out / "reward")
    assert load_yaml(out / "dpo" / "config.yaml")["init"] == str(out / "sft")
    rows = {r["stage"]: r for r in table["rows"]}
    assert list(rows) == ["pretrained", "SFT", "+PPO", "+DPO", "+GRPO"]
    assert rows["SFT"]["kl_to_sft"] == pytest.approx(0.0, abs=1e-6)
    assert rows["SFT"]["win_rate_vs_sft_reward_model"] == rows["SFT"]["win_rate_vs_sft_checker"] == 0.5
    for r in rows.values():
        assert r["accuracy"] + r["confident_wrong"] + r["abstention"] == pytest.approx(1.0)
        assert r["faq_perplexity"] > 1.0 and r["kl_to_sft"] >= -1e-6
    sources = set(table["reward_model_pairwise_accuracy"])
    assert "checker:elements" in sources and any(s.startswith("faq-mismatch:") for s in sources)
    assert [t["temperature"] for t in table["temperature"]] == cfg.temperatures
    assert json.loads((out / TABLE_FILE).read_text())["rows"][0]["stage"] == "pretrained"
    assert (out / "chat_temperature.png").stat().st_size > 1000
    prefs = [json.loads(line) for line in (out / "data" / "preferences.jsonl").read_text().splitlines()]
    assert {p["source"].split(":")[0] for p in prefs} == {"faq-mismatch", "checker"}


def test_every_stage_opens_in_genlab_chat_and_the_server(piped):
    out, _, _ = piped
    done = subprocess.run(
        [sys.executable, "-m", "genlab", "chat", str(out / "sft"), "--once", "What is the chemical symbol of iron?",
         "--temperature", "0", "--max-new-tokens", "6", "--no-moderation"],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "<|" not in done.stdout
    from genlab.serving.app import create_app
    from genlab.serving.models import load_model

    model = load_model(out / "grpo", name="grpo")
    with TestClient(create_app({"grpo": model})) as client:
        body = {"model": "grpo", "max_tokens": 5, "temperature": 0, "messages": [{"role": "user", "content": "Tin?"}]}
        res = client.post("/v1/chat/completions", json=body)
    assert res.status_code == 200, res.text
    assert "<|" not in res.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stage", ["grpo", "ppo"])
def test_rerun_skips_finished_stages_and_resumes_an_interrupted_one_exactly(piped, tmp_path, capsys, stage):
    out, cfg, _ = piped
    copy = tmp_path / "chat"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / stage)
    # an interrupted stage: half of its steps done, the run's config asking for all of them
    saved = load_yaml(out / stage / "config.yaml")
    saved["init"] = str(copy / "sft")
    if saved.get("reward"):
        saved["reward"] = str(copy / "reward")
    steps = saved["train"]["max_steps"]
    assert steps >= 2
    run_task(
        {**saved, "train": {**saved["train"], "max_steps": steps // 2, "decay_steps": steps}}, run_dir=copy / stage
    )
    (copy / stage / RESULTS_FILE).unlink()
    save_yaml({**saved, "train": {**saved["train"], "decay_steps": steps}}, copy / stage / "config.yaml")
    capsys.readouterr()
    run_pipeline(copy, 2.0, cfg, data=_data(cfg))
    log = capsys.readouterr().out
    assert all(f"{s}: finished earlier, skipped" in log for s in STAGES if s != stage)
    assert f"{STAGES.index(stage) + 1}/6 {stage}: resuming" in log
    a, _, _ = load_run(out / stage, "last")
    b, _, _ = load_run(copy / stage, "last")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=k)


def test_a_budget_too_small_is_a_one_line_error_naming_the_minimum(tmp_path):
    cfg = load_config()
    need = minimum_budget(cfg)
    with pytest.raises(ConfigError, match=f"too small for the chat pipeline: it needs at least {need:g} min") as e:
        run_pipeline(tmp_path / "x", parse_budget("90s"), cfg)
    assert "\n" not in str(e.value) and not (tmp_path / "x").exists()
    steps = plan(cfg, 120.0)
    assert steps["sft"]["max_minutes"] == pytest.approx(cfg.shares["sft"] * 120)
    assert steps["pretrain"]["max_steps"] == 2 * plan(cfg, 60.0)["pretrain"]["max_steps"]


def test_parse_budget():
    assert parse_budget("60m") == 60 and parse_budget("90s") == 1.5 and parse_budget("1.5h") == 90
    assert parse_budget("45") == 45
    with pytest.raises(ConfigError, match="not a duration"):
        parse_budget("an hour")
