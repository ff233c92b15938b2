"""Real series from statsmodels' bundled data: loading, time-ordered splits, scaling, one-line errors."""

import numpy as np
import pytest

from genlab.core.errors import ConfigError, DataError
from genlab.data.series import SERIES, WindowBatches, check_series, load_series, origins, split_series
from genlab.eval.forecast import mase, seasonal_naive, smape


@pytest.mark.parametrize("name,n", [("sunspots", 309), ("co2", 526), ("macro-unemp", 203)])
def test_named_series_load_complete_and_in_time_order(name, n):
    values, labels = load_series(name)
    assert len(values) == len(labels) == n and np.isfinite(values).all()
    assert labels == sorted(labels)


def test_split_is_in_time_order_and_scaled_on_the_training_span_only():
    values = np.arange(100, dtype=float)
    s = split_series(values, window=10, horizon=5)
    assert (s.train_end, s.val_end) == (70, 80)
    assert s.mean == pytest.approx(34.5) and s.std == pytest.approx(values[:70].std())
    for span, lo, hi in (("train", 0, 70), ("val", 70, 80), ("test", 80, 100)):
        t = origins(s, span, 10, 5)
        assert t.min() >= max(lo, 10) and t.max() + 5 <= hi  # every target inside its span
    assert origins(s, "test", 10, 5).tolist() == list(range(80, 96))


def test_windows_resume_exactly():
    s = split_series(np.sin(np.arange(200) / 3), 12, 4)
    it = WindowBatches(s, 12, 4, batch_size=8, seed=1)
    for _ in range(5):
        next(it)
    state = it.state_dict()
    a = [next(it)[1] for _ in range(30)]
    it2 = WindowBatches(s, 12, 4, batch_size=8, seed=9)
    it2.load_state_dict(state)
    assert all(np.array_equal(x, next(it2)[1]) for x in a)


def test_short_series_missing_values_and_bad_horizon_are_one_line_errors():
    with pytest.raises(DataError, match="has 20 values, shorter than window \\+ horizon = 24 \\+ 8") as e:
        split_series(np.ones(20), 24, 8, name="tiny")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="horizon=0 must be at least 1"):
        split_series(np.ones(100), 10, 0)
    values = np.ones(50)
    values[[17, 30]] = np.nan
    with pytest.raises(DataError, match=r"has 2 missing value\(s\), the first at index 17 \(1917\)"):
        check_series(values, "mine", [str(1900 + i) for i in range(50)])
    with pytest.raises(DataError, match="first at index 17"):
        split_series(values, 5, 2, name="mine")
    with pytest.raises(ConfigError, match="unknown series"):
        load_series("nope")


def test_metrics_and_seasonal_naive():
    y = np.array([[2.0, 4.0]])
    assert smape(y, y) == 0.0 and smape(np.array([[1.0]]), np.array([[3.0]])) == pytest.approx(100.0)
    train = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 3.0])  # m = 2: |diffs| = 0, 0, 0, 2 -> scale 0.5
    assert mase(np.array([1.0]), np.array([2.0]), train, 2) == pytest.approx(2.0)
    values = np.arange(20.0)
    f = seasonal_naive(values, np.array([10]), 5, 4)
    assert f.tolist() == [[6.0, 7.0, 8.0, 9.0, 6.0]]  # one season back, two for h >= m
    assert SERIES["co2"].period == 12
