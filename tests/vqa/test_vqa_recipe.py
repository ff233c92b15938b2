"""The vqa and vqa-pretrain recipes on a tiny easy-VQA folder made here: a run like every other
family (results.json with per-type validation accuracy, genlab eval on test, exact resume),
pretraining then fine-tuning, scene questions, and the prior fallback of genlab vqa."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genlab.cli import app
from genlab.core.errors import ConfigError
from genlab.recipes import TASKS, list_recipes, load_recipe
from genlab.recipes.vqa import answer, evaluate_vqa, load_vqa_run, pretrain, train
from genlab.training.checkpoint import find_checkpoint
from vqa.helpers import make_easy_vqa, tiny_recipe


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_easy_vqa(tmp_path_factory.mktemp("easy-vqa"), n_train=30, n_test=10)


@pytest.fixture(scope="module")
def run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vqa"
    train(tiny_recipe(root), out)
    return out


def test_recipes_are_registered():
    assert {"vqa/easy-vqa", "vqa/scenes", "vqa/pretrain"} <= set(list_recipes())
    assert TASKS["vqa"] == ("vqa", "train") and TASKS["vqa-pretrain"] == ("vqa", "pretrain")
    for name in ("vqa/easy-vqa", "vqa/scenes", "vqa/pretrain"):
        assert load_recipe(name)["model"]["streams"] == "two"


def test_a_run_writes_results_with_per_type_validation_accuracy(run):
    res = json.loads((run / "results.json").read_text())
    assert res["steps"] == 6 and res["streams"] == "two" and res["data_kind"].startswith("generated")
    assert set(res["val_per_type"]) == {"color", "shape", "yes/no"} and res["val_n"] == 18
    assert 0.0 <= res["val_accuracy"] <= 1.0 and res["vqa_parameters"] > 0
    assert (run / "vqa_vocab.json").is_file() and (run / "checkpoints" / "best.json").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy_yes_no" in r for r in rows) and any("train_loss" in r for r in rows)


def test_eval_scores_the_test_split_per_type(run):
    direct = evaluate_vqa(run)
    assert direct["split"] == "test" and direct["n"] == 30 and set(direct["per_type"]) == {"color", "shape", "yes/no"}
    got = CliRunner().invoke(app, ["eval", str(run)])
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["accuracy"] == pytest.approx(direct["accuracy"])


def test_exact_resume(root, tmp_path):
    recipe = tiny_recipe(root)
    train(recipe, tmp_path / "a")
    half = {**recipe, "train": {**recipe["train"], "max_steps": 3, "decay_steps": 6}}
    train(half, tmp_path / "b")
    full = {**recipe, "train": {**recipe["train"], "decay_steps": 6}}
    train({**full}, tmp_path / "b", resume=True)
    a = load_vqa_run(tmp_path / "a", "last")[0].state_dict()
    b = load_vqa_run(tmp_path / "b", "last")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert ra["val_accuracy"] == rb["val_accuracy"] and ra["val_loss"] == pytest.approx(rb["val_loss"], abs=1e-7)


@pytest.mark.parametrize("streams", ["one", "text"])
def test_the_baselines_train_on_the_same_budget(root, tmp_path, run, streams):
    recipe = tiny_recipe(root, streams=streams)
    recipe["train"]["max_steps"] = 2
    train(recipe, tmp_path / streams)
    res = json.loads((tmp_path / streams / "results.json").read_text())
    two = json.loads((run / "results.json").read_text())["vqa_parameters"]
    assert res["streams"] == streams and abs(res["vqa_parameters"] - two) / two < 0.05


def test_pretraining_then_fine_tuning(root, tmp_path):
    pre = tiny_recipe(root, task="vqa-pretrain")
    pretrain(pre, tmp_path / "pre")
    rows = [json.loads(line) for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_region_loss" in r and "val_word_loss" in r for r in rows)
    res = json.loads((tmp_path / "pre" / "results.json").read_text())
    assert res["region_target"].startswith("pixels")
    fine = {**tiny_recipe(root), "init": str(tmp_path / "pre")}
    fine["model"] = {"streams": "two"}  # the rest comes from the pretraining run
    train(fine, tmp_path / "fine")
    body = load_vqa_run(tmp_path / "pre", "best")[0].state_dict()
    start = find_checkpoint(tmp_path / "fine" / "checkpoints", "last")
    assert start.is_dir() and json.loads((tmp_path / "fine" / "results.json").read_text())["init"] == str(
        tmp_path / "pre"
    )
    tuned = load_vqa_run(tmp_path / "fine", "last")[0]
    assert tuned.config.n_embd == 16 and not tuned.config.pretrain_heads
    assert set(k for k in tuned.state_dict() if not k.startswith("vqa.")) <= set(body)
    with pytest.raises(ConfigError, match="needs an image stream"):
        pretrain(tiny_recipe(root, task="vqa-pretrain", streams="text"), tmp_path / "bad")
    with pytest.raises(ConfigError, match="give a vqa-pretrain run"):
        train({**tiny_recipe(root), "init": str(tmp_path / "fine")}, tmp_path / "bad2")


def test_scene_questions_from_the_scenes_module(tmp_path, monkeypatch):
    def make_scenes(split, n, seed=0):  # the genlab.data.scenes API, tiny grayscale canvases
        rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[split] + seed)
        out = []
        for _ in range(n):
            k = int(rng.integers(1, 4))
            image = np.zeros((64, 64), np.uint8)
            image[: 8 * k, :16] = 200
            qs = (
                ("how many items are there?", str(k), "count"),
                ("is there a bag?", "yes" if k > 1 else "no", "yes/no"),
            )
            out.append(types.SimpleNamespace(image=image, items=(), caption=f"{k} items", questions=qs))
        return out

    monkeypatch.setitem(sys.modules, "genlab.data.scenes", types.SimpleNamespace(make_scenes=make_scenes))
    recipe = {**tiny_recipe(None), "data": {"source": "scenes", "scenes": {"train": 24, "val": 8, "test": 8}}}
    recipe["model"] = {**recipe["model"], "patch_size": 16}
    train(recipe, tmp_path / "scenes")
    res = json.loads((tmp_path / "scenes" / "results.json").read_text())
    assert set(res["val_per_type"]) == {"count", "yes/no"} and "Fashion-MNIST" in res["data_kind"]
    model = load_vqa_run(tmp_path / "scenes")[0]
    assert model.config.in_channels == 1 and model.config.image_size == 64
    assert set(evaluate_vqa(tmp_path / "scenes")["per_type"]) == {"count", "yes/no"}
    pretrain({**recipe, "task": "vqa-pretrain"}, tmp_path / "scenes-pre")  # captions + questions as text
    assert (tmp_path / "scenes-pre" / "results.json").is_file()


def test_pretraining_on_captioned_drawings_then_easy_vqa(root, tmp_path, monkeypatch):
    def load_tuxpaint(split="train", size=64):  # the genlab.data.captions API, tiny RGB drawings
        rng = np.random.default_rng(len(split))
        return [types.SimpleNamespace(image=rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), caption=f"a {w} cat",
                                      caption_fr=None, name=f"animals/{w}", category="animals")
                for w in ("red", "small", "happy", "blue")[: 4 if split == "train" else 2]]  # fmt: skip

    monkeypatch.setitem(sys.modules, "genlab.data.captions", types.SimpleNamespace(load_tuxpaint=load_tuxpaint))
    pre = tiny_recipe(root, task="vqa-pretrain")
    pre["data"] = {**pre["data"], "source": "tuxpaint"}
    pre["vocab_from"] = "easy-vqa"
    pre["train"] = {**pre["train"], "batch_size": 2, "max_steps": 2, "eval_interval": 1}
    pretrain(pre, tmp_path / "pre")
    res = json.loads((tmp_path / "pre" / "results.json").read_text())
    assert res["data_kind"].startswith("real")
    tokens = json.loads((tmp_path / "pre" / "vqa_vocab.json").read_text())["tokens"]
    assert {"cat", "happy", "color", "shape"} <= set(tokens)  # captions + easy-VQA's question words
    fine = {**tiny_recipe(root), "init": str(tmp_path / "pre"), "model": {"streams": "two"}}
    fine["train"] = {**fine["train"], "max_steps": 2}
    train(fine, tmp_path / "fine")
    assert json.loads((tmp_path / "fine" / "vqa_vocab.json").read_text())["tokens"] == tokens
    with pytest.raises(ConfigError, match="data.source='tuxpaint'"):
        train({**tiny_recipe(root), "data": {"source": "tuxpaint"}}, tmp_path / "bad")


def test_answers_and_the_prior_fallback(run, root, tmp_path):
    image = root / "test" / "images" / "0.png"
    reply = answer(run, image, "what color is the shape?")
    assert reply["source"] == "model" and reply["warning"] is None and 0.0 < reply["probability"] <= 1.0
    assert reply["answer"] in json.loads((run / "vqa_vocab.json").read_text())["answers"]
    some = answer(run, image, "what color is the zebra?")
    assert some["source"] == "model" and "zebra" in some["warning"]
    vocab = json.loads((run / "vqa_vocab.json").read_text())
    unread = answer(run, image, "zebra quux?")
    assert (
        unread["source"] == "prior"
        and unread["probability"] is None
        and "outside the run's vocabulary" in unread["warning"]
    )
    common = max(vocab["type_counts"].items(), key=lambda kv: (kv[1], kv[0]))[0]  # ties: the last name
    assert unread["answer"] == vocab["priors"][common]
    new_kind = answer(run, image, "how many shapes are there?")
    assert new_kind["source"] == "prior" and "no entry for questions like" in new_kind["warning"]
    cli = CliRunner().invoke(app, ["vqa", str(run), "--image", str(image), "--question", "zebra quux?"])
    assert cli.exit_code == 0, cli.output
    lines = cli.output.strip().splitlines()
    assert lines[-1] == f"{vocab['priors'][common]} (prior)"
    assert sum(line.startswith("warning:") for line in lines) == 1
    ok = CliRunner().invoke(app, ["vqa", str(run), "--image", str(image), "--question", "is there a red shape?"])
    assert ok.exit_code == 0 and "(p=" in ok.output and "warning" not in ok.output
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray)
    bad = CliRunner().invoke(app, ["vqa", str(run), "--image", str(gray), "--question", "is there a red shape?"])
    assert bad.exit_code != 0 and "reads 16x16" in str(bad.exception or bad.output)
