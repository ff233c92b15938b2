"""Forecasting recipe: a real series -> windows in time order -> a forecaster -> MASE / sMAPE on the test span.

The series is split in time order (train, validation, test; never shuffled across the
boundaries), scaled with the training span's mean and standard deviation, and cut into windows
of ``model.window`` past values and ``model.horizon`` future ones. The best checkpoint is the
one with the lowest validation loss; at the end it forecasts from every origin of the test span
and ``results.json`` holds its MASE, sMAPE and interval coverage beside the seasonal-naive,
ETS and SARIMA baselines fitted on the same training span (:mod:`genlab.eval.forecast`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from genlab.core.config import merge, to_dict
from genlab.core.errors import ConfigError
from genlab.data.series import SERIES, WindowBatches, load_series, origins, split_series, windows
from genlab.eval.forecast import baselines, model_scores
from genlab.models import build_model, family_of
from genlab.models.forecast import forecast_loss
from genlab.recipes import runner
from genlab.runs import load_run, model_config
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw


@dataclass
class SeriesDataConfig:
    series: str = "sunspots"  # sunspots | co2 | macro-unemp
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    period: int = 0  # seasonal period m of MASE and the baselines; 0: the series' own
    baselines: bool = True  # fit seasonal-naive, ETS and SARIMA for results.json


@dataclass
class ForecastRecipe:
    task: str = "forecast"
    model: dict = field(default_factory=lambda: {"preset": "forecast-hybrid"})
    data: SeriesDataConfig = field(default_factory=SeriesDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def prepare_split(d: SeriesDataConfig, window: int, horizon: int):
    values, _ = load_series(d.series)
    return split_series(values, window, horizon, d.val_fraction, d.test_fraction, d.series)


def predictor(model) -> callable:
    def predict(x: np.ndarray) -> dict:
        with torch.no_grad():
            return {k: v.numpy() for k, v in model.predict(torch.from_numpy(np.asarray(x, np.float32))).items()}

    return predict


def _prepare(r: ForecastRecipe, s: runner.Session) -> runner.Setup:
    t, d = r.train, r.data
    cfg = model_config(r.model)
    if d.series not in SERIES:
        raise ConfigError(f"unknown series '{d.series}'; choose from {sorted(SERIES)}")
    split = prepare_split(d, cfg.window, cfg.horizon)
    m = d.period or SERIES[d.series].period
    s.start(merge(to_dict(r), {"model": {"family": family_of(cfg), **to_dict(cfg)}}))
    model = s.rt.wrap(build_model(cfg))
    batches = lambda: WindowBatches(split, cfg.window, cfg.horizon, t.batch_size, t.seed, s.rt.rank, s.rt.world_size)
    data = batches()
    val_x, val_y = windows(split.scaled, origins(split, "val", cfg.window, cfg.horizon), cfg.window, cfg.horizon)

    def loss(ms, batch):
        x, y = batch
        return forecast_loss(cfg, ms["model"](x), y)

    def evaluate(models):
        model = models["model"]
        with torch.no_grad():
            out = model(val_x)
            mse = torch.mean((model.predict(val_x)["mean"] - val_y) ** 2)
        return {"val_loss": float(forecast_loss(cfg, out, val_y)), "val_mse": float(mse)}

    trainer = Trainer(
        {"model": model}, {"model": adamw(model, t.lr, t.weight_decay, (t.beta1, t.beta2))}, [Phase(loss)], s.rt, t,
        run_dir=s.run_dir, evaluate=evaluate, count=lambda batch: len(batch[0]), unit="window",
    )  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        best = load_run(s.run_dir).model
        test = origins(split, "test", cfg.window, cfg.horizon)
        out = {"series": d.series, "period": m, "test_origins": len(test), "horizon": cfg.horizon,
               "model": model_scores(predictor(best), split, test, cfg.window, cfg.horizon, m)}  # fmt: skip
        if d.baselines:
            out["baselines"] = baselines(split, test, cfg.horizon, m)
        s.log(f"test MASE {out['model']['mase']:.3f}, sMAPE {out['model']['smape']:.2f}% ({cfg.arch})")
        return out

    return runner.Setup(
        trainer, data, sum(p.numel() for p in model.parameters()),
        f"{cfg.arch} ({cfg.rnn}) | {d.series}: {split.train_end} train / {split.val_end - split.train_end} val / "
        f"{len(split.values) - split.val_end} test values, window {cfg.window}, horizon {cfg.horizon}",
        runner.flops_per_item(loss, {"model": model}, next(batches()), s.rt.device, t.batch_size),
        lambda steps: steps * t.batch_size * t.grad_accum, finish,
    )  # fmt: skip


train = runner.entry_point("forecast", ForecastRecipe, _prepare)
