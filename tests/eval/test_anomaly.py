"""AUROC against its definition, and the PNG code length as an image-complexity measure."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from genlab.eval.anomaly import auroc, pixel_entropy, png_code_length


def test_auroc_is_the_probability_an_anomaly_outscores_a_normal_input():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts one half
    # pairs (anomaly, normal): (0.6 > 0.3), (0.6 > 0.7)?no, (0.2 > 0.3)?no, (0.2 > 0.7)?no -> 1/4
    assert auroc([0.3, 0.7, 0.6, 0.2], [0, 0, 1, 1]) == 0.25
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=500).round(1), rng.integers(0, 2, 500)  # rounding makes ties
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="both"):
        auroc([0.1, 0.2], [1, 1])


def test_png_code_length_grows_with_image_complexity():
    blank = np.zeros((1, 28, 28), np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.uint8)
    square = blank.copy()
    square[0, 8:20, 8:20] = 255
    nats = png_code_length(np.concatenate([blank, square, noise]))
    assert nats[0] < nats[1] < nats[2]
    assert nats[2] > 28 * 28 * 7 * np.log(2)  # noise hardly compresses: ~8 bits a pixel
    with pytest.raises(ValueError, match="uint8"):
        png_code_length(np.zeros((2, 28, 28), np.float32))


def test_pixel_entropy_is_the_floor_of_the_bernoulli_cross_entropy():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.25]])
    expected = np.log(2) + -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    assert pixel_entropy(x).item() == pytest.approx(expected, abs=1e-12)
    logits = torch.randn(50, 4, dtype=torch.float64)  # any prediction does no better
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand(50, 4).double(), reduction="none")
    assert (ce.sum(1) >= pixel_entropy(x) - 1e-12).all()
