"""The forecaster family: every arch, every output, and that it never reads past its window."""

import dataclasses

import numpy as np
import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.data.series import origins, split_series, windows
from genlab.models.forecast import ARCHS, OUTPUTS, ForecastConfig, Forecaster, forecast_loss

SMALL = ForecastConfig(window=12, horizon=4, n_layer=1, n_embd=16, n_head=2, dropout=0.0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_every_arch_and_output_forecasts_the_horizon_and_trains(arch, output):
    cfg = dataclasses.replace(SMALL, arch=arch, output=output, rnn="gru" if arch == "transformer-rnn" else "lstm")
    torch.manual_seed(0)
    model = Forecaster(cfg)
    x, y = torch.randn(5, 12), torch.randn(5, 4)
    out = model(x)
    assert out.shape == (5, 4, cfg.n_out)
    forecast_loss(cfg, out, y).backward()
    assert all(p.grad is not None for p in model.parameters())
    p = model.eval().predict(x)
    assert p["mean"].shape == p["lower"].shape == (5, 4)
    assert bool((p["lower"] <= p["upper"]).all())
    assert (model.rnn is None) == (arch == "transformer")
    assert hasattr(model, "blocks") == (arch != "rnn")


@pytest.mark.parametrize("relative", [False, True])
def test_the_forecast_never_sees_values_after_the_cut_off(relative):
    torch.manual_seed(0)
    model = Forecaster(dataclasses.replace(SMALL, relative=relative)).eval()
    rng = np.random.default_rng(0)
    series = rng.normal(size=200).cumsum()
    split = split_series(series, 12, 4)
    test = origins(split, "test", 12, 4)
    x, _ = windows(split.scaled, test, 12, 4)
    changed = series.copy()
    cut = test[0]
    changed[cut:] = 1e3 * rng.normal(size=len(series) - cut)  # everything from the first test origin on
    x2, _ = windows(split_series(changed, 12, 4).scaled, test[:1], 12, 4)
    torch.testing.assert_close(model(x2), model(x[:1]), rtol=0, atol=0)
    assert split_series(changed, 12, 4).mean == split.mean  # the scaling is the training span's


@pytest.mark.parametrize("output", OUTPUTS)
def test_relative_forecasts_move_with_the_last_value(output):
    torch.manual_seed(0)
    model = Forecaster(dataclasses.replace(SMALL, relative=True, output=output)).eval()
    x = torch.randn(3, 12)
    a, b = model.predict(x), model.predict(x + 5.0)
    torch.testing.assert_close(b["mean"], a["mean"] + 5.0, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(b["upper"] - b["lower"], a["upper"] - a["lower"], rtol=1e-5, atol=1e-4)


def test_quantile_loss_is_the_pinball_loss():
    cfg = dataclasses.replace(SMALL, output="quantile", quantiles=[0.1, 0.9], horizon=1)
    out = torch.tensor([[[0.0, 2.0]]])  # (1, 1, 2): q_0.1 = 0, q_0.9 = 2
    y = torch.tensor([[1.0]])
    assert float(forecast_loss(cfg, out, y)) == pytest.approx((0.1 * 1 + 0.1 * 1) / 2)
    with pytest.raises(ConfigError, match="increasing levels"):
        ForecastConfig(output="quantile", quantiles=[0.9, 0.1])


def test_a_horizon_below_one_is_a_one_line_error():
    with pytest.raises(ConfigError, match="horizon=0 must be at least 1") as e:
        ForecastConfig(horizon=0)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"expected windows of shape \(B, 12\)"):
        Forecaster(SMALL)(torch.randn(2, 10))
