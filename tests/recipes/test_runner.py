"""The recipe runner: teardown when a task raises, a resumable run directory, results.json, compiled modules."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from conftest import tiny_recipe

from genlab.recipes import lm, load_recipe, run_task
from genlab.training.checkpoint import find_checkpoint
from genlab.training.runtime import Runtime


class Boom(RuntimeError):
    pass


def test_a_task_that_raises_closes_the_runtime_and_stays_resumable(tiny_text, tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(Runtime, "close", lambda self: closed.append(self))
    calls = {"n": 0}
    original = lm.causal_lm_loss

    def failing(model, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise Boom("a bug in step 8")
        return original(model, batch)

    monkeypatch.setattr(lm, "causal_lm_loss", failing)
    with pytest.raises(Boom):
        lm.train(tiny_recipe(tiny_text, max_steps=12, checkpoint_interval=5), tmp_path / "run")
    assert len(closed) == 1  # torn down in the runner's finally
    assert find_checkpoint(tmp_path / "run" / "checkpoints", "last").name.startswith("step-00000005")
    assert not (tmp_path / "run" / "results.json").exists()

    monkeypatch.setattr(lm, "causal_lm_loss", original)
    trainer = lm.train(tiny_recipe(tiny_text, max_steps=12, checkpoint_interval=5), tmp_path / "run", resume=True)
    assert trainer.step == 12 and len(closed) == 2
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 12 and results["best_val_loss"] == trainer.best
    assert results["item"] == "tok" and results["peak_dtype"] == "fp32"
    # FLOPs per token of gpt-micro: about 6 x the parameters (forward + backward), plus attention
    n = results["parameters"]
    assert 4 * n < results["flops_per_item"] < 12 * n
    assert results["train_flops"] == results["flops_per_item"] * 12 * 4 * 32  # steps x batch x block
    assert 0 < results["mfu"] < 1


def test_a_set_up_error_closes_the_runtime_and_writes_nothing(tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(Runtime, "close", lambda self: closed.append(self))
    r = load_recipe("cnn/digits")
    r["model"]["image_size"] = 28
    with pytest.raises(Exception, match="model.image_size=8"):
        run_task(r, run_dir=tmp_path / "run")
    assert len(closed) == 1 and not (tmp_path / "run").exists()


class Recording(nn.Module):
    """Stands in for ``torch.compile(module)``: records each call, then runs the module."""

    calls: list[str] = []

    def __init__(self, module: nn.Module):
        super().__init__()
        self._orig_mod = module  # the name torch.compile uses: unwrap() and checkpoints see through it

    def forward(self, *args, **kwargs):
        Recording.calls.append("train" if self._orig_mod.training else "eval")
        return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._orig_mod, name)


@pytest.mark.parametrize("name", ["cnn/digits", "gan/digits"])
def test_train_compile_reaches_the_losses_and_the_evaluation(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kw: Recording(module))
    Recording.calls = []
    r = load_recipe(name)
    r["train"].update({"max_steps": 4, "eval_interval": 2, "progress": False, "tensorboard": False, "compile": True})
    run_task(r, run_dir=tmp_path / "run")
    if name == "cnn/digits":
        # 4 training steps, and the validation images of 2 evaluations in batches of 1000
        assert Recording.calls.count("train") == 4 and Recording.calls.count("eval") == 2
    else:  # two phases: D sees real and fake images, G runs for each; no evaluation without a classifier
        assert Recording.calls.count("train") == 4 * (3 + 2)
