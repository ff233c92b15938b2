"""Numeric precision: what dtype=auto resolves to, GENLAB_DTYPE, and training under forced bf16.

The bf16 runs here pin ``dtype: bf16`` so that they run on every machine, with or without
native bf16 (where it is emulated they are slower, with the same numbers).
"""

import warnings

import pytest
import torch
from conftest import tiny_recipe

import genlab.recipes.lm as lm
from genlab.core.errors import ConfigError
from genlab.recipes.lm import train
from genlab.runs import load_run
from genlab.training import runtime
from genlab.training.runtime import DTYPE_ENV, DTYPES, Runtime, auto_dtype, pick_dtype

CPU = torch.device("cpu")


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(DTYPE_ENV, raising=False)


@pytest.fixture
def quiet_bf16(monkeypatch):
    """The emulated-bf16 warning has been given already (as it would be once per process)."""
    monkeypatch.setattr(runtime, "_warned_emulated_bf16", True)


# --- what auto means -----------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_auto_on_cpu_is_fp32_even_with_native_bf16(no_env, monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert pick_dtype("auto", CPU) == torch.float32
    assert Runtime.from_env("cpu").dtype == torch.float32


@pytest.mark.parametrize(("supported", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cuda_is_bf16_where_supported(no_env, monkeypatch, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert auto_dtype(torch.device("cuda")) == expected
    assert pick_dtype("auto", torch.device("cuda")) == expected


def test_auto_on_mps_is_fp32(no_env):
    assert pick_dtype("auto", torch.device("mps")) == torch.float32


# --- GENLAB_DTYPE ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_env_sets_what_auto_resolves_to(monkeypatch, quiet_bf16, name):
    monkeypatch.setenv(DTYPE_ENV, name)
    assert pick_dtype("auto", CPU) == DTYPES[name]
    assert Runtime.from_env("cpu").dtype == DTYPES[name]
    monkeypatch.setenv(DTYPE_ENV, f" {name.upper()} ")  # spelling is forgiven
    assert pick_dtype("auto", CPU) == DTYPES[name]


def test_env_auto_or_empty_means_unset(monkeypatch):
    for value in ("auto", ""):
        monkeypatch.setenv(DTYPE_ENV, value)
        assert pick_dtype("auto", CPU) == torch.float32


@pytest.mark.parametrize("explicit", sorted(DTYPES))
def test_an_explicit_dtype_wins_over_the_env(monkeypatch, quiet_bf16, explicit):
    other = "fp32" if explicit != "fp32" else "bf16"
    monkeypatch.setenv(DTYPE_ENV, other)
    assert pick_dtype(explicit, CPU) == DTYPES[explicit]


def test_a_bad_env_value_is_a_one_line_error_naming_the_valid_ones(monkeypatch):
    monkeypatch.setenv(DTYPE_ENV, "fp64")
    with pytest.raises(ConfigError) as err:
        pick_dtype("auto", CPU)
    msg = str(err.value)
    assert "\n" not in msg and "GENLAB_DTYPE='fp64'" in msg
    assert all(name in msg for name in ("fp32", "bf16", "fp16"))
    monkeypatch.setenv(DTYPE_ENV, "fp32")
    with pytest.raises(ConfigError, match="unknown dtype 'float64'; use auto, fp32, bf16 or fp16"):
        pick_dtype("float64", CPU)


def test_emulated_bf16_warns_once_per_process(monkeypatch):
    monkeypatch.setattr(runtime, "_warned_emulated_bf16", False)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setenv(DTYPE_ENV, "bf16")
    with pytest.warns(UserWarning, match="no native bf16") as record:
        for _ in range(3):
            pick_dtype("auto", CPU)
        pick_dtype("bf16", CPU)
    assert len(record) == 1
    monkeypatch.setattr(runtime, "_warned_emulated_bf16", False)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pick_dtype("auto", CPU) == torch.bfloat16  # native: nothing to warn about


# --- training under forced bf16 --------------------------------------------------------------


def _probe_loss(monkeypatch, seen: list):
    """Wrap the recipe's loss: record the autocast state and what dtype a matmul inside it gets."""
    original = lm.causal_lm_loss

    def loss(model, batch):
        probe = torch.ones(2, 2) @ torch.ones(2, 2)
        seen.append((torch.is_autocast_enabled("cpu"), probe.dtype, model(batch[0]).dtype))
        return original(model, batch)

    monkeypatch.setattr(lm, "causal_lm_loss", loss)


@pytest.mark.parametrize(("dtype", "autocast"), [("bf16", True), ("fp32", False)])
def test_training_runs_under_the_dtype_asked_for(tiny_text, tmp_path, monkeypatch, quiet_bf16, dtype, autocast):
    monkeypatch.setenv(DTYPE_ENV, "fp16")  # the explicit dtype wins over it
    seen = []
    _probe_loss(monkeypatch, seen)
    trainer = train(tiny_recipe(tiny_text, dtype=dtype, max_steps=30, eval_interval=15), tmp_path / "run")
    compute = DTYPES[dtype]
    assert trainer.runtime.dtype == compute
    # the first 30 calls are the training steps (the runner's FLOP count after training runs outside autocast)
    assert len(seen) >= 30 and all(s == (autocast, compute, compute) for s in seen[:30]), seen[:3]
    losses = [r["train_loss"] for r in trainer.history if "train_loss" in r]
    vals = [r["val_loss"] for r in trainer.history if "val_loss" in r]
    assert losses[-1] < losses[0] - 0.3 and vals[-1] < vals[0]


def test_bf16_weights_and_optimizer_state_stay_fp32(tiny_text, tmp_path, quiet_bf16):
    trainer = train(tiny_recipe(tiny_text, dtype="bf16", max_steps=3), tmp_path / "run")
    model = trainer.models["model"]  # (a gradient has its parameter's dtype; the FLOP count empties them)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    state = trainer.optimizers["model"].state
    assert all(s["exp_avg"].dtype == torch.float32 for s in state.values())


def test_exact_resume_under_bf16(tiny_text, tmp_path, quiet_bf16):
    """Bit-exact under bf16 too, when both halves run in bf16: the same ops in the same order
    on the same inputs round the same way (CPU kernels are deterministic)."""

    def recipe(steps):
        return tiny_recipe(tiny_text, dtype="bf16", max_steps=steps, decay_steps=16)

    train(recipe(16), tmp_path / "a")
    train(recipe(8), tmp_path / "b")
    resumed = train(recipe(16), tmp_path / "b", resume=True)
    assert resumed.step == 16 and resumed.runtime.dtype == torch.bfloat16
    a, b = (load_run(tmp_path / d, "last")[0].state_dict() for d in "ab")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
