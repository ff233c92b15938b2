"""The forecast recipe on real series: trains, scores the test span against the baselines, resumes exactly."""

import json

import pytest

from genlab.core.errors import ConfigError, DataError
from genlab.recipes import load_recipe
from genlab.recipes.forecast import train
from genlab.runs.evaluate import evaluate_run

RECIPE = {
    "task": "forecast",
    "model": {"preset": "forecast-hybrid", "window": 16, "horizon": 4, "n_embd": 16, "n_head": 2, "n_layer": 1},
    "data": {"series": "macro-unemp", "baselines": False},
    "train": {"max_steps": 40, "batch_size": 16, "lr": 3e-3, "warmup_steps": 5, "eval_interval": 20,
              "eval_batches": 1, "progress": False, "tensorboard": False},
}  # fmt: skip


def test_forecast_recipe_scores_the_test_span_beside_the_baselines(tmp_path):
    recipe = {**RECIPE, "data": {**RECIPE["data"], "baselines": True}}
    trainer = train(recipe, tmp_path / "run")
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["steps"] == 40 and r["series"] == "macro-unemp" and r["period"] == 4
    assert set(r["baselines"]) == {"seasonal_naive", "ets", "sarima"}
    for scores in [r["model"], *r["baselines"].values()]:
        assert scores["mase"] > 0 and 0 < scores["smape"] < 200
    assert 0 <= r["model"]["coverage"] <= 1
    losses = [h["train_loss"] for h in trainer.history if "train_loss" in h]
    assert losses[-1] < losses[0]
    again = evaluate_run(tmp_path / "run")  # genlab eval RUN
    assert again["task"] == "forecast" and again["model"]["mase"] == pytest.approx(r["model"]["mase"])


def test_forecast_recipe_resumes_exactly(tmp_path):
    train(RECIPE, tmp_path / "a")
    half = {**RECIPE, "train": {**RECIPE["train"], "max_steps": 20, "decay_steps": 40}}
    train(half, tmp_path / "b")
    full = {**RECIPE, "train": {**RECIPE["train"], "decay_steps": 40}}
    train(full, tmp_path / "b", resume=True)
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["model"] == b["model"]


def test_every_forecast_recipe_names_a_real_series():
    for name in ("sunspots", "co2", "macro-unemp", "sunspots-lstm", "co2-transformer"):
        r = load_recipe(f"forecast/{name}")
        assert r["task"] == "forecast" and r["data"]["series"] in name


def test_bad_series_settings_are_one_line_errors(tmp_path):
    long = {**RECIPE, "model": {**RECIPE["model"], "window": 150}}
    with pytest.raises(DataError, match="cannot each hold window \\+ horizon = 150 \\+ 4"):
        train(long, tmp_path / "run")
    with pytest.raises(ConfigError, match="horizon=0 must be at least 1"):
        train({**RECIPE, "model": {**RECIPE["model"], "horizon": 0}}, tmp_path / "run2")
    assert not (tmp_path / "run").exists()
