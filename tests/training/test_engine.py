import copy
import json
import math
import os
import signal

import pytest
import torch
import torch.nn as nn
from conftest import tiny_recipe

from genlab.core.errors import GenlabError
from genlab.core.registry import preset
from genlab.models.gpt import GPT
from genlab.objectives.causal_lm import causal_lm_loss
from genlab.recipes.lm import train
from genlab.runs import load_run
from genlab.training.checkpoint import find_checkpoint, load_weights, read_pointer
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


# --- best_mode and target -----------------------------------------------------------------


def _scripted_trainer(run_dir, values, mode, target=0.0, max_steps=None):
    """A linear model evaluated at every step; the k-th evaluation reports acc = values[k]."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    script = iter(values)
    cfg = TrainConfig(
        max_steps=max_steps or len(values),
        eval_interval=1,
        best_metric="acc",
        best_mode=mode,
        target=target,
        warmup_steps=0,
        schedule="constant",
        progress=False,
        tensorboard=False,
    )
    trainer = Trainer(
        {"model": model},
        {"model": torch.optim.SGD(model.parameters(), lr=0.1)},
        [Phase(lambda ms, x: ms["model"](x).pow(2).mean())],
        CPU,
        cfg,
        run_dir=run_dir,
        evaluate=lambda models: {"acc": v} if (v := next(script)) is not None else {},
    )
    return trainer, [torch.randn(4, 2)] * 10


@pytest.mark.parametrize("mode, best, step", [("max", 0.7, 2), ("min", 0.2, 1)])
def test_best_checkpoint_is_the_highest_in_max_mode_and_the_lowest_in_min_mode(tmp_path, mode, best, step):
    trainer, data = _scripted_trainer(tmp_path, [0.2, 0.7, 0.4], mode)
    trainer.fit(iter(data))
    assert trainer.best == best and trainer.stop_reason is None
    assert read_pointer(tmp_path / "checkpoints", "best")["step"] == step
    assert read_pointer(tmp_path / "checkpoints", "last")["step"] == 3


@pytest.mark.parametrize(
    "mode, values, reason",
    [("max", [0.2, 0.5, 0.9], "reached acc >= 0.5"), ("min", [0.9, 0.5, 0.1], "reached acc <= 0.5")],
)
def test_target_stops_at_or_beyond_it_in_the_direction_of_the_mode(tmp_path, mode, values, reason):
    """0.2 is below the target: it would stop a min-mode run at once, but not a max-mode one."""
    trainer, data = _scripted_trainer(tmp_path, values, mode, target=0.5)
    trainer.fit(iter(data))
    assert trainer.step == 2 and trainer.stop_reason == reason


def test_a_bad_best_mode_is_a_one_line_error():
    model = nn.Linear(2, 1)
    cfg = TrainConfig(best_mode="maximum", progress=False)
    with pytest.raises(GenlabError, match=r"train.best_mode must be one of \['max', 'min'\], got 'maximum'") as e:
        Trainer({"model": model}, {"model": torch.optim.SGD(model.parameters(), lr=0.1)}, [], CPU, cfg)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_resume_restores_best_and_keeps_comparing_in_the_mode(tmp_path, mode):
    trainer, data = _scripted_trainer(tmp_path, [0.2, 0.7, 0.4], mode, max_steps=3)
    trainer.fit(iter(data))
    # Steps 4-5 report 0.5 (better than neither 0.2 nor 0.7) and then a new extreme.
    resumed, _ = _scripted_trainer(tmp_path, [0.5, 0.9 if mode == "max" else 0.1], mode, max_steps=5)
    resumed.resume(find_checkpoint(tmp_path / "checkpoints", "last"))
    assert resumed.best == (0.7 if mode == "max" else 0.2)
    resumed.fit(iter(data))
    assert resumed.best == (0.9 if mode == "max" else 0.1)
    assert read_pointer(tmp_path / "checkpoints", "best")["step"] == 5


@pytest.mark.parametrize("mode, worst", [("max", -math.inf), ("min", math.inf)])
def test_resume_without_a_best_yet_starts_from_the_worst_of_the_mode(tmp_path, mode, worst):
    trainer, data = _scripted_trainer(tmp_path, [None, None], mode)  # evaluations without the best metric
    trainer.fit(iter(data))
    last = find_checkpoint(tmp_path / "checkpoints", "last")
    assert json.loads((last / "state.json").read_text())["state"]["best"] is None
    resumed, _ = _scripted_trainer(tmp_path, [], mode)
    resumed.best = 0.0
    resumed.resume(last)
    assert resumed.best == worst


# --- aux_loss -------------------------------------------------------------------------------


@pytest.mark.parametrize("accum", [1, 3])
def test_aux_loss_is_trained_on_and_logged_as_the_mean_over_micro_batches(accum):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    reference = copy.deepcopy(model)
    batches = [torch.randn(4, 3) for _ in range(accum)]

    def loss_fn(m, x):  # an aux loss that depends on the weights and on the batch
        return m(x).pow(2).mean(), {"aux_loss": 0.3 * m.weight.abs().sum() * x.mean()}

    cfg = TrainConfig(
        max_steps=1,
        grad_accum=accum,
        warmup_steps=0,
        schedule="constant",
        grad_clip=0.0,
        eval_interval=0,
        progress=False,
        tensorboard=False,
    )
    trainer = fit(model, loss_fn, iter(batches), torch.optim.SGD(model.parameters(), lr=0.1), CPU, cfg)
    parts = [loss_fn(reference, x) for x in batches]
    sum((loss + m["aux_loss"]) / accum for loss, m in parts).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7)
    row = trainer.history[-1]
    assert row["aux_loss"] == pytest.approx(sum(m["aux_loss"].item() for _, m in parts) / accum, rel=1e-6)
    assert row["train_loss"] == pytest.approx(sum(loss.item() for loss, _ in parts) / accum, rel=1e-6)  # no aux


# --- host syncs -----------------------------------------------------------------------------


def test_metrics_stay_tensors_until_a_log_step(monkeypatch):
    """20 micro-batches, 2 log steps, 2 evaluations: the host syncs follow the log steps only."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    seen = {"k": 0, "losses": []}

    def loss_fn(m, x):
        k = seen["k"]
        seen["k"] += 1
        loss = m(x).pow(2).mean()
        seen["losses"].append(loss.detach().clone())
        return loss, {"index": torch.tensor(float(k)), "half_loss": loss.detach() / 2}

    syncs = []
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, *a, _o=original, _n=name: syncs.append(_n) or _o(t, *a))
    cfg = TrainConfig(
        max_steps=10, grad_accum=2, log_interval=5, eval_interval=5, warmup_steps=2, progress=False, tensorboard=False
    )
    trainer = Trainer(
        {"model": model},
        {"model": torch.optim.SGD(model.parameters(), lr=0.01)},
        [Phase(lambda ms, x: loss_fn(ms["model"], x))],
        CPU,
        cfg,
        evaluate=lambda models: {"val_loss": 1.0},
    )
    trainer.fit(iter([torch.randn(4, 3) for _ in range(20)]))
    n_syncs = len(syncs)
    monkeypatch.undo()
    log_steps, evaluations, metrics = 2, 2, 2
    assert seen["k"] == 20
    assert n_syncs <= log_steps * (1 + metrics) + evaluations, syncs
    logged = [r for r in trainer.history if "train_loss" in r]
    assert [r["step"] for r in logged] == [5, 10]
    for row, first in zip(logged, (0, 10)):  # the log step's metrics: the mean over its 2 micro-batches
        last_step = seen["losses"][first + 8 : first + 10]
        assert row["index"] == first + 8.5
        assert row["half_loss"] == pytest.approx(float(sum(last_step)) / 4, rel=1e-6)
        assert row["train_loss"] == pytest.approx(float(sum(seen["losses"][first : first + 10])) / 10, rel=1e-6)


# --- train.compile --------------------------------------------------------------------------


class Recorder(nn.Module):
    """Stands in for torch.compile's wrapper: holds the module as ``_orig_mod``, as OptimizedModule does."""

    def __init__(self, module):
        super().__init__()
        self._orig_mod = module
        self.calls = 0

    def forward(self, *args):
        self.calls += 1
        return self._orig_mod(*args)


def test_compile_hands_the_wrapper_to_losses_and_evaluation_and_checkpoints_the_plain_module(tmp_path, monkeypatch):
    wrappers = []
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: wrappers.append(Recorder(m)) or wrappers[-1])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    received = []

    def loss(models, x):
        received.append(models["model"])
        return models["model"](x).pow(2).mean()

    def evaluate(models):
        received.append(models["model"])
        return {"val_loss": models["model"](torch.ones(2, 3)).pow(2).mean().item()}

    cfg = TrainConfig(max_steps=4, eval_interval=2, warmup_steps=0, compile=True, progress=False, tensorboard=False)
    trainer = Trainer(
        {"model": model},
        {"model": torch.optim.SGD(model.parameters(), lr=0.1)},
        [Phase(loss)],
        CPU,
        cfg,
        run_dir=tmp_path,
        evaluate=evaluate,
    )
    trainer.fit(iter([torch.randn(5, 3)] * 4))
    assert len(wrappers) == 1 and wrappers[0]._orig_mod is model
    assert len(received) == 4 + 2 and all(r is wrappers[0] for r in received) and wrappers[0].calls == 6
    last = find_checkpoint(tmp_path / "checkpoints", "last")
    from safetensors.torch import load_file

    assert set(load_file(str(last / "model.safetensors"))) == set(model.state_dict())  # no _orig_mod. prefix
    other = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    load_weights(other, last / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))
    resumed = Trainer(
        {"model": other},
        {"model": torch.optim.SGD(other.parameters(), lr=0.1)},
        [Phase(loss)],
        CPU,
        cfg,
        run_dir=tmp_path,
    )
    resumed.resume(last)
    assert resumed.step == 4 and isinstance(resumed.forward_models["model"], Recorder)


@pytest.mark.slow
def test_real_torch_compile_trains_like_eager(tmp_path):
    """torch.compile for real (needs a C compiler on CPU): same weights as eager after a few steps."""

    def run(compile_):
        torch.manual_seed(0)
        model = GPT(preset("gpt-micro"))
        (tmp_path / str(compile_)).mkdir()
        cfg = TrainConfig(
            max_steps=3, warmup_steps=1, eval_interval=0, compile=compile_, progress=False, tensorboard=False
        )
        trainer = fit(
            model, causal_lm_loss, iter(_batches(3)), adamw(model, 1e-3), CPU, cfg, run_dir=tmp_path / str(compile_)
        )
        return model, trainer

    eager, _ = run(False)
    compiled, trainer = run(True)
    assert type(trainer.forward_models["model"]).__name__ == "OptimizedModule"
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    last = find_checkpoint(tmp_path / "True" / "checkpoints", "last")
    other = GPT(preset("gpt-micro"))
    load_weights(other, last / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), compiled.parameters()))
