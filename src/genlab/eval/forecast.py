"""Forecast accuracy and the classical baselines a forecaster is judged against.

Every forecaster here is scored the same way: from each origin t of the test span it forecasts
[t, t + F) knowing only the values before t, and the errors of all origins and steps are pooled.

    MASE  = mean |y - f| / mean_{training span} |y_s - y_{s-m}|     (Hyndman & Koehler 2006)
    sMAPE = 100 mean 2 |y - f| / (|y| + |f|)                          (in percent, 0..200)

MASE < 1 beats the in-sample seasonal-naive forecast of period m. Baselines (fitted on the
training span only, then run forward over the known past of each origin with the same parameters):

- seasonal-naive: f_{t+h} = y_{t+h-m k}, k = ceil((h+1) / m): the value one season earlier;
- ETS: statsmodels' Holt-Winters ``ExponentialSmoothing`` (additive trend and season, Hyndman et al.
  2008), its smoothing parameters and initial states estimated on the training span;
- SARIMA: statsmodels' ``SARIMAX`` with order (1, 1, 1) x (1, 0, 1, m) (non-seasonal (2, 0, 1) when m
  is long relative to the series), applied to each origin's history with the training fit's parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from genlab.data.series import Split


def mase(y: np.ndarray, f: np.ndarray, train: np.ndarray, m: int) -> float:
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    return float(np.mean(np.abs(y - f)) / scale)


def smape(y: np.ndarray, f: np.ndarray) -> float:
    denom = np.abs(y) + np.abs(f)
    ratio = np.where(denom == 0, 0.0, 2 * np.abs(y - f) / np.where(denom == 0, 1.0, denom))
    return float(100 * np.mean(ratio))


def targets(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    return values[origins[:, None] + np.arange(horizon)[None, :]]  # (N, F)


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """(N, F): y_{t+h-mk} with k = ceil((h+1)/m), only values before t."""
    h = np.arange(horizon)
    back = m * ((h // m) + 1)  # (F,)
    return values[origins[:, None] + h[None, :] - back[None, :]]


def ets_forecasts(split: Split, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Holt-Winters fitted on the training span, then filtered over each origin's history (same parameters)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    train = split.values[: split.train_end]
    kw = {"trend": "add", "seasonal": "add" if 2 * m <= len(train) else None, "seasonal_periods": m}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(train, initialization_method="estimated", **kw).fit()
        p = fit.params
        init = {"initial_level": p["initial_level"], "initial_trend": p["initial_trend"]}
        if kw["seasonal"]:
            init["initial_seasonal"] = p["initial_seasons"]
        fixed = {"smoothing_level": p["smoothing_level"], "smoothing_trend": p["smoothing_trend"]}
        if kw["seasonal"]:
            fixed["smoothing_seasonal"] = p["smoothing_seasonal"]
        out = []
        for t in origins:
            model = ExponentialSmoothing(split.values[:t], initialization_method="known", **init, **kw)
            out.append(model.fit(optimized=False, **fixed).forecast(horizon))
    return np.asarray(out)


def sarima_forecasts(split: Split, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """SARIMAX fitted on the training span, applied to each origin's history with the same parameters."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    train = split.values[: split.train_end]
    seasonal = 4 * m <= len(train) and m <= 12
    order, sorder = ((1, 1, 1), (1, 0, 1, m)) if seasonal else ((2, 0, 1), (0, 0, 0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = SARIMAX(train, order=order, seasonal_order=sorder, trend="c" if not seasonal else "n").fit(disp=False)
        return np.asarray([fit.apply(split.values[:t]).forecast(horizon) for t in origins])


def score(y: np.ndarray, f: np.ndarray, split: Split, m: int) -> dict:
    return {"mase": mase(y, f, split.values[: split.train_end], m), "smape": smape(y, f)}


def baselines(split: Split, origins: np.ndarray, horizon: int, m: int) -> dict[str, dict]:
    """MASE and sMAPE of seasonal-naive, ETS and SARIMA from ``origins`` (forecasts in the series' units)."""
    y = targets(split.values, origins, horizon)
    out = {"seasonal_naive": score(y, seasonal_naive(split.values, origins, horizon, m), split, m)}
    for name, fn in (("ets", ets_forecasts), ("sarima", sarima_forecasts)):
        out[name] = score(y, fn(split, origins, horizon, m), split, m)
    return out


def model_scores(predict: Callable[[np.ndarray], dict], split: Split, origins: np.ndarray, window: int,
                 horizon: int, m: int) -> dict:  # fmt: skip
    """Score a forecaster: ``predict(x (N, L) scaled) -> {'mean', 'lower', 'upper'} (N, F) scaled``.
    Adds the empirical coverage of its interval (the fraction of truths inside [lower, upper])."""
    idx = origins[:, None] + np.arange(-window, 0)[None, :]
    p = predict(split.scaled[idx])
    mean, lo, hi = (split.unscale(np.asarray(p[k], dtype=np.float64)) for k in ("mean", "lower", "upper"))
    y = targets(split.values, origins, horizon)
    return {**score(y, mean, split, m), "coverage": float(np.mean((y >= lo) & (y <= hi)))}
