"""FLOPs per step counted without side effects, a measured peak, MFU."""

import torch
import torch.nn as nn

from genlab.training.flops import measure_flops, mfu, peak_flops


def test_measuring_counts_the_matmuls_and_changes_nothing():
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 4))
    x = torch.randn(32, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    def loss(models, batch):
        return models["m"](batch).square().mean()

    flops = measure_flops(loss, {"m": model}, x)
    # forward 2*B*(8*16 + 16*4); backward twice that, less the input gradient of the first layer
    forward = 2 * 32 * (8 * 16 + 16 * 4)
    assert 2 * forward < flops <= 3 * forward
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics kept
    assert torch.equal(torch.get_rng_state(), rng) and all(p.grad is None for p in model.parameters())
    assert measure_flops([loss, loss], {"m": model}, x) == 2 * flops  # a step of two phases


def test_peak_and_mfu():
    peak = peak_flops("cpu", torch.float32, n=256, repeats=2)
    assert peak > 1e8 and peak_flops("cpu", torch.float32, n=256, repeats=2) == peak  # measured once
    assert mfu(peak * 0.5 * 10, 10.0, peak) == 0.5 and mfu(1.0, 0.0, peak) == 0.0
