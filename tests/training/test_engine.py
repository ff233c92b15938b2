import math
import os
import signal

import pytest
import torch
import torch.nn as nn
from conftest import tiny_recipe

from genlab.core.registry import preset
from genlab.models.gpt import GPT
from genlab.objectives.causal_lm import causal_lm_loss
from genlab.recipes.lm import load_run, train
from genlab.training.checkpoint import find_checkpoint
from genlab.training.engine import Phase, TrainConfig, Trainer, TrainingError, fit
from genlab.training.optim import adamw
from genlab.training.runtime import Runtime
from genlab.training.schedules import warmup_cosine

CPU = Runtime(torch.device("cpu"), torch.float32)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 1.0, 0.1, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 1.0, 0.1, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 1.0, 0.1, 10, 110) == pytest.approx(0.55)
    assert warmup_cosine(110, 1.0, 0.1, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(500, 1.0, 0.1, 10, 110) == pytest.approx(0.1)


def _batches(n, B=8, T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randint(0, 65, (B, T + 1), generator=g)
        out.append((x[:, :-1], x[:, 1:]))
    return out


def _train(batches, accum, steps=3):
    torch.manual_seed(0)
    model = GPT(preset("gpt-micro"))
    cfg = TrainConfig(max_steps=steps, grad_accum=accum, warmup_steps=1, eval_interval=0, progress=False)
    fit(model, causal_lm_loss, iter(batches), adamw(model, 1e-3), CPU, cfg)
    return model


def test_gradient_accumulation_equals_the_full_batch():
    full = _batches(3, B=8)
    halves = [(x[i : i + 4], y[i : i + 4]) for x, y in full for i in (0, 4)]
    a, b = _train(full, accum=1), _train(halves, accum=2)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_loss_goes_down_and_history_is_logged():
    torch.manual_seed(0)
    model = GPT(preset("gpt-micro"))
    batch = _batches(1)[0]
    cfg = TrainConfig(max_steps=30, warmup_steps=1, lr=3e-3, log_interval=5, eval_interval=0, progress=False)
    trainer = fit(model, causal_lm_loss, iter([batch] * 30), adamw(model, 3e-3), CPU, cfg)
    losses = [r["train_loss"] for r in trainer.history]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5


def test_two_phases_two_optimizers_alternate():
    """The shape of a GAN step: two models, two optimizers, phases in order."""
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    calls = []

    def loss_a(models, batch):
        calls.append("a")
        return models["a"](batch).pow(2).mean()

    def loss_b(models, batch):
        calls.append("b")
        return (models["b"](batch) - models["a"](batch).detach()).pow(2).mean()

    b_before = b.weight.detach().clone()
    opts = {"a": torch.optim.SGD(a.parameters(), lr=0.1), "b": torch.optim.SGD(b.parameters(), lr=0.1)}
    cfg = TrainConfig(max_steps=2, warmup_steps=0, eval_interval=0, progress=False, schedule="constant")
    phases = [Phase(loss_a, "a", "loss_a"), Phase(loss_b, "b", "loss_b")]
    trainer = Trainer({"a": a, "b": b}, opts, phases, CPU, cfg)
    trainer.fit(iter([torch.randn(4, 2)] * 2))
    assert calls == ["a", "b", "a", "b"]
    assert not torch.equal(b.weight, b_before)
    assert "loss_a" in trainer.history[-1] and "loss_b" in trainer.history[-1]


def test_nan_loss_stops_with_the_step_number():
    model = nn.Linear(2, 1)

    def loss(m, batch):
        return m(batch).mean() * float("nan")

    cfg = TrainConfig(max_steps=10, log_interval=5, eval_interval=0, progress=False)
    with pytest.raises(TrainingError, match="by step 5"):
        fit(model, loss, iter([torch.randn(3, 2)] * 10), torch.optim.SGD(model.parameters(), lr=0.1), CPU, cfg)


def _weights(run_dir):
    return load_run(run_dir, "last")[0].state_dict()


def test_exact_resume(tiny_text, tmp_path):
    """N steps in one go == N/2 steps, stop, resume to N: identical weights."""
    train(tiny_recipe(tiny_text, max_steps=20, decay_steps=20), tmp_path / "a")
    train(tiny_recipe(tiny_text, max_steps=10, decay_steps=20), tmp_path / "b")
    train(tiny_recipe(tiny_text, max_steps=20, decay_steps=20), tmp_path / "b", resume=True)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_exact_resume_with_dropout(tiny_text, tmp_path):
    recipe = tiny_recipe(tiny_text, max_steps=12, decay_steps=12)
    recipe["model"]["dropout"] = 0.2
    train(recipe, tmp_path / "a")
    recipe["train"]["max_steps"] = 6
    train(recipe, tmp_path / "b")
    recipe["train"]["max_steps"] = 12
    train(recipe, tmp_path / "b", resume=True)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_writes_a_checkpoint_and_resume_continues(tiny_text, tmp_path):
    from genlab.recipes import lm

    calls = {"n": 0}
    original = lm.causal_lm_loss

    def interrupting_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return original(model, batch)

    lm.causal_lm_loss = interrupting_loss
    try:
        trainer = train(tiny_recipe(tiny_text, max_steps=20), tmp_path / "run")
    finally:
        lm.causal_lm_loss = original
    assert trainer.stop_reason == "interrupted" and trainer.step == 7
    assert find_checkpoint(tmp_path / "run" / "checkpoints", "last").name.startswith("step-00000007")
    resumed = train(tiny_recipe(tiny_text, max_steps=20), tmp_path / "run", resume=True)
    assert resumed.step == 20


def test_bf16_autocast_matches_fp32_within_tolerance():
    torch.manual_seed(0)
    model = GPT(preset("gpt-micro")).eval()
    ids = torch.randint(0, 65, (2, 16))
    ref = model(ids)
    with Runtime(torch.device("cpu"), torch.bfloat16).autocast():
        low = model(ids)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=0.05, rtol=0.05)
    y = torch.randint(0, 65, (2, 16))
    with Runtime(torch.device("cpu"), torch.bfloat16).autocast():
        low_loss = causal_lm_loss(model, (ids, y))
    assert math.isclose(low_loss.item(), causal_lm_loss(model, (ids, y)).item(), rel_tol=0.01)
