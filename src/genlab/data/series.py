"""Real time series for forecasting: loaders, time-ordered splits, scaling, windows.

Sources (``genlab data list``), all real measurements bundled with statsmodels (read from its
CSV files; statsmodels itself is not imported here):

- ``sunspots``: yearly mean sunspot numbers 1700-2008 (309 values; period m = 11, the solar cycle);
- ``co2``: Mauna Loa atmospheric CO2 (ppm), weekly 1958-2001, averaged into 526 monthly values
  (the weeks' missing readings are left out of each month's mean; the 5 months with no reading
  at all are interpolated linearly; m = 12);
- ``macro-unemp``: US quarterly unemployment rate 1959-2009 (203 values; m = 4), from statsmodels'
  ``macrodata``.

A split is in time order and never shuffled across its boundaries: the first values train, the
next validate, the last test. The scaling (mean and standard deviation) is fitted on the training
span only. A forecast from origin t reads values [t - L, t) and predicts [t, t + F).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import ConfigError, DataError
from genlab.data.batches import ShuffledBatches


def _statsmodels_datasets() -> Path | None:
    spec = importlib.util.find_spec("statsmodels")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


#: statsmodels' bundled dataset folder (found without importing statsmodels).
STATSMODELS_DATASETS = _statsmodels_datasets()


@dataclass(frozen=True)
class SeriesInfo:
    name: str
    file: str  # under STATSMODELS_DATASETS
    period: int  # seasonal period m (MASE, seasonal-naive, ETS)
    frequency: str
    description: str


SERIES = {
    "sunspots": SeriesInfo("sunspots", "sunspots/sunspots.csv", 11, "yearly",
                           "yearly mean sunspot numbers 1700-2008, 309 values (real, statsmodels)"),
    "co2": SeriesInfo("co2", "co2/co2.csv", 12, "monthly",
                      "Mauna Loa CO2 ppm, weekly 1958-2001 averaged to 526 months (real, statsmodels)"),
    "macro-unemp": SeriesInfo("macro-unemp", "macrodata/macrodata.csv", 4, "quarterly",
                              "US unemployment rate, quarterly 1959-2009, 203 values (real, statsmodels macrodata)"),
}  # fmt: skip


def series_path(name: str) -> Path | None:
    """Where the CSV of a named series is, or None when statsmodels is not installed."""
    if STATSMODELS_DATASETS is None:
        return None
    path = STATSMODELS_DATASETS / SERIES[name].file
    return path if path.is_file() else None


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_series(name: str) -> tuple[np.ndarray, list[str]]:
    """The values (float64, time order) of a named series and a label (date) for each."""
    if name not in SERIES:
        raise ConfigError(f"unknown series '{name}'; choose from {sorted(SERIES)}")
    path = series_path(name)
    if path is None:
        raise DataError(f"series '{name}' needs statsmodels' bundled datasets: pip install statsmodels")
    rows = _rows(path)
    if name == "sunspots":
        values = np.array([float(r["SUNACTIVITY"]) for r in rows])
        labels = [str(int(float(r["YEAR"]))) for r in rows]
    elif name == "co2":  # weekly (YYYYMMDD) -> the mean of each month's readings; empty readings are missing
        months: dict[str, list[float]] = {}
        for r in rows:
            month = f"{r['date'][:4]}-{r['date'][4:6]}"
            months.setdefault(month, [])
            if r["co2"].strip():
                months[month].append(float(r["co2"]))
        labels = sorted(months)
        values = np.array([np.mean(months[m]) if months[m] else np.nan for m in labels])
        gap = np.isnan(values)  # 5 months (1958-06, ...) have no reading at all: interpolate linearly in time
        values[gap] = np.interp(np.flatnonzero(gap), np.flatnonzero(~gap), values[~gap])
    else:
        values = np.array([float(r["unemp"]) for r in rows])
        labels = [f"{int(float(r['year']))}Q{int(float(r['quarter']))}" for r in rows]
    check_series(values, name, labels)
    return values, labels


def check_series(values: np.ndarray, name: str = "series", labels: list[str] | None = None) -> None:
    """One-line DataError for missing (NaN or infinite) values, saying where the first is."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(values, dtype=np.float64)))
    if len(bad):
        where = f"index {bad[0]}" + (f" ({labels[bad[0]]})" if labels else "")
        raise DataError(
            f"{name} has {len(bad)} missing value(s), the first at {where}: fill or drop them before forecasting"
        )


@dataclass
class Split:
    """A time-ordered split of one series: values [0, train_end) train, [train_end, val_end) validate,
    [val_end, n) test; ``mean`` and ``std`` are the training span's."""

    values: np.ndarray
    train_end: int
    val_end: int
    mean: float
    std: float

    def scale(self, x):
        return (x - self.mean) / self.std

    def unscale(self, x):
        return x * self.std + self.mean

    @property
    def scaled(self) -> np.ndarray:
        return self.scale(self.values).astype(np.float32)


def split_series(values: np.ndarray, window: int, horizon: int, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, name: str = "series") -> Split:  # fmt: skip
    """Split in time order; ConfigError if the series cannot hold a window + horizon in each span."""
    if horizon < 1:
        raise ConfigError(f"horizon={horizon} must be at least 1 (steps to forecast)")
    if window < 1:
        raise ConfigError(f"window={window} must be at least 1 (past steps to read)")
    values = np.asarray(values, dtype=np.float64)
    check_series(values, name)
    n = len(values)
    if n < window + horizon:
        raise DataError(f"{name} has {n} values, shorter than window + horizon = {window} + {horizon}")
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    train_end, val_end = n - n_test - n_val, n - n_test
    if train_end < window + horizon or n_val < horizon or n_test < horizon:
        raise DataError(
            f"{name} has {n} values: a training span of {train_end} and validation/test spans of {n_val}/{n_test} "
            f"cannot each hold window + horizon = {window} + {horizon} (training) or the horizon (val/test)"
        )
    train = values[:train_end]
    std = float(train.std()) or 1.0
    return Split(values, train_end, val_end, float(train.mean()), std)


def windows(scaled: np.ndarray, origins: np.ndarray, window: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N, L) = values [t - L, t) and targets (N, F) = [t, t + F) for each origin t."""
    idx = origins[:, None] + np.arange(-window, 0)[None, :]  # (N, L)
    tgt = origins[:, None] + np.arange(horizon)[None, :]  # (N, F)
    return torch.from_numpy(scaled[idx].astype(np.float32)), torch.from_numpy(scaled[tgt].astype(np.float32))


def origins(split: Split, span: str, window: int, horizon: int) -> np.ndarray:
    """Forecast origins t whose targets [t, t + F) lie inside ``span`` (train | val | test); the window may
    reach back into earlier spans (the past is known), never forward."""
    bounds = {"train": (window, split.train_end), "val": (split.train_end, split.val_end),
              "test": (split.val_end, len(split.values))}  # fmt: skip
    if span not in bounds:
        raise ConfigError(f"span must be one of {list(bounds)}, got {span!r}")
    start, end = bounds[span]
    return np.arange(max(start, window), end - horizon + 1)


class WindowBatches(ShuffledBatches):
    """Endless shuffled mini-batches (x (B, L), y (B, F)) of the training windows, resumable exactly."""

    def __init__(self, split: Split, window: int, horizon: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1):  # fmt: skip
        self.x, self.y = windows(split.scaled, origins(split, "train", window, horizon), window, horizon)
        if len(self.x) < batch_size * world_size:
            raise DataError(f"{len(self.x)} training windows cannot fill a global batch of {batch_size * world_size}")
        super().__init__(len(self.x), batch_size, self._collate, seed, rank, world_size)

    def _collate(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(index)
        return self.x[index], self.y[index]
