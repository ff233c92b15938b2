"""Mixture of Experts: the fast sorted path equals the plain loop, forward and backward."""

import math

import pytest
import torch

from genlab.core.errors import ConfigError
from genlab.layers.moe import (
    GROUPED_LINEAR,
    MoE,
    MoEConfig,
    Router,
    kept_slots,
    reference_moe,
    router_z_loss,
    sorted_moe,
    switch_aux_loss,
)


def make_moe(dtype=torch.float64, seed=0, dim=8, hidden=16, kind="swiglu", bias=False, **moe):
    torch.manual_seed(seed)
    cfg = MoEConfig(**{"num_experts": 4, "top_k": 2, **moe})
    layer = MoE(dim, hidden, cfg, kind=kind, bias=bias).to(dtype)
    with torch.no_grad():  # larger router logits than the default init: distinct, confident choices
        layer.router.weight.normal_(0.0, 1.0)
        for p in layer.experts.parameters():
            p.normal_(0.0, 0.3)
    return layer


def grads(layer, x, fn):
    """Output and gradients (input, every parameter) of fn(x) under a fixed random upstream gradient."""
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    params = [p for p in layer.parameters() if p.requires_grad]
    return y.detach(), torch.autograd.grad(y, [x, *params], g, allow_unused=True)


def assert_paths_equal(layer, x, capacity, kernel, atol=1e-12):
    r = layer.router(x)  # one routing for both paths: the comparison is of the dispatch

    def fast(x):
        return sorted_moe(x, layer.router(x), layer.experts, capacity, kernel)[0]

    def ref(x):
        return reference_moe(x, layer.router(x), layer.experts, capacity)[0]

    (y1, g1), (y2, g2) = grads(layer, x, fast), grads(layer, x, ref)
    torch.testing.assert_close(y1, y2, atol=atol, rtol=0)
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=atol, rtol=0)
    fast_kept, ref_kept = (
        sorted_moe(x, r, layer.experts, capacity, kernel)[1],
        reference_moe(x, r, layer.experts, capacity)[1],
    )
    assert fast_kept.tolist() == ref_kept.tolist()


@pytest.mark.parametrize("kernel", ["loop", "bmm"])
@pytest.mark.parametrize("capacity", [None, 3])
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"router": "sigmoid"},
        {"kind": "gelu", "bias": True},
        {"normalize": False, "num_experts": 6, "top_k": 3},
        {"shared_experts": 2, "granularity": 2},
    ],
    ids=["softmax-swiglu", "sigmoid", "gelu-bias", "unnormalised-k3", "shared-fine"],
)
def test_fast_path_equals_reference_forward_and_backward_fp64(kernel, capacity, opts):
    layer = make_moe(**opts)
    x = torch.randn(20, 8, dtype=torch.float64)
    assert_paths_equal(layer, x, capacity, kernel)


@pytest.mark.skipif("grouped_mm" not in GROUPED_LINEAR, reason="torch without grouped_mm")
@pytest.mark.parametrize("capacity", [None, 5])
def test_grouped_mm_kernel_equals_reference_fp32(capacity):
    layer = make_moe(torch.float32, dim=16, hidden=32, num_experts=8, top_k=2)
    x = torch.randn(40, 16)
    assert_paths_equal(layer, x, capacity, "grouped_mm", atol=1e-5)


def test_capacity_drops_later_slots_first_choices_first():
    idx = torch.tensor([[0, 1], [0, 1], [0, 2], [1, 0]])  # (N=4, K=2)
    kept = kept_slots(idx, 3, capacity=2)
    # expert 0's queue: first choices of tokens 0, 1, 2, then the second choice of token 3;
    # expert 1's: the first choice of token 3, then the second choices of tokens 0 and 1
    assert kept.tolist() == [[True, True], [True, False], [False, True], [True, False]]
    assert kept_slots(idx, 3, None).all()


def test_capacity_applies_in_training_and_evaluation_is_dropless():
    layer = make_moe(capacity_factor=0.5)
    x = torch.randn(32, 8, dtype=torch.float64)
    cap = math.ceil(0.5 * 32 * 2 / 4)
    layer.train()
    y_train = layer(x)
    assert (layer.kept <= cap).all() and layer.kept.sum() < layer.load.sum()
    layer.eval()
    y_eval = layer(x)
    assert layer.kept.tolist() == layer.load.tolist() and layer.load.sum() == 32 * 2
    assert not torch.allclose(y_train, y_eval)
    layer.cfg.kernel = "reference"
    torch.testing.assert_close(layer(x), y_eval, atol=1e-12, rtol=0)


def test_layer_keeps_the_input_shape_and_the_dense_path_adds_shared_experts():
    layer = make_moe(shared_experts=1, shared_gate=True)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    y = layer(x)
    assert y.shape == x.shape
    routed, _ = sorted_moe(x.view(10, 8), layer.router(x.view(10, 8)), layer.experts, None)
    gate = torch.sigmoid(layer.shared_gate(x.view(10, 8)))
    torch.testing.assert_close(y.view(10, 8), routed + gate * layer.shared(x.view(10, 8)))


def test_router_gates_top_k_and_normalisation():
    torch.manual_seed(0)
    for score in ("softmax", "sigmoid"):
        router = Router(8, 6, 2, score=score).double()
        x = torch.randn(10, 8, dtype=torch.float64)
        r = router(x)
        scores = r.logits.softmax(-1) if score == "softmax" else r.logits.sigmoid()
        assert (r.idx == scores.topk(2).indices).all()
        torch.testing.assert_close(r.gates, scores.gather(1, r.idx) / scores.gather(1, r.idx).sum(-1, keepdim=True))
        torch.testing.assert_close(r.probs.sum(-1), torch.ones(10, dtype=torch.float64))
    raw = Router(8, 6, 2, normalize=False).double()(x)
    torch.testing.assert_close(raw.gates, raw.logits.softmax(-1).gather(1, raw.idx))


def test_balancing_bias_changes_the_choice_not_the_gates():
    torch.manual_seed(0)
    router = Router(8, 4, 1, bias_balancing=True)
    x = torch.randn(16, 8)
    before = router(x)
    with torch.no_grad():
        router.expert_bias[:] = torch.tensor([0.0, 0.0, 0.0, 10.0])
    after = router(x)
    assert (after.idx == 3).all()
    torch.testing.assert_close(after.gates, torch.ones(16, 1))  # one expert, normalised: the bias never weighs
    torch.testing.assert_close(after.logits, before.logits)


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_sign_rule_update_balances_a_skewed_router(score):
    layer = make_moe(torch.float32, num_experts=8, top_k=2, router=score, bias_balancing=True, bias_rate=0.01,
                     aux_loss_coef=0.0)  # fmt: skip
    with torch.no_grad():
        layer.router.weight[0] += 1.0  # expert 0 attracts too many tokens
    gen = torch.Generator().manual_seed(1)
    held_out = torch.randn(4096, 8, generator=gen)

    def imbalance():
        layer.eval()
        layer(held_out)  # evaluation never moves the bias
        layer.train()
        return (layer.load.max() / layer.load.float().mean()).item()

    skewed = imbalance()
    for _ in range(400):
        layer(torch.randn(256, 8, generator=gen))  # each training forward is one step of the sign rule
    assert skewed > 1.4 and imbalance() < 1.2, (skewed, imbalance())
    assert "router.expert_bias" in layer.state_dict()


def test_switch_aux_loss_and_z_loss_formulas():
    torch.manual_seed(0)
    router = Router(8, 4, 2).double()
    r = router(torch.randn(12, 8, dtype=torch.float64))
    f = torch.zeros(4)
    for n in range(12):
        for k in range(2):
            f[r.idx[n, k]] += 1 / 24
    p = r.logits.softmax(-1).mean(0)
    torch.testing.assert_close(switch_aux_loss(r, 4), 4 * (f.double() * p).sum())
    torch.testing.assert_close(router_z_loss(r), (r.logits.exp().sum(-1).log() ** 2).mean())
    uniform = Router(8, 4, 2).double()
    torch.nn.init.zeros_(uniform.weight)
    torch.testing.assert_close(switch_aux_loss(uniform(torch.randn(5, 8, dtype=torch.float64)), 4).item(), 1.0)


def test_layer_aux_loss_is_weighted_and_reaches_the_router():
    layer = make_moe(aux_loss_coef=0.1, z_loss_coef=0.01)
    x = torch.randn(16, 8, dtype=torch.float64)
    layer(x)
    r = layer.router(x)
    torch.testing.assert_close(layer.aux_loss, 0.1 * switch_aux_loss(r, 4) + 0.01 * router_z_loss(r))
    layer.aux_loss.backward()
    assert layer.router.weight.grad.abs().sum() > 0


def test_fine_grained_split_keeps_parameters_and_active_share():
    coarse = MoE(8, 32, MoEConfig(num_experts=4, top_k=1))
    fine = MoE(8, 32, MoEConfig(num_experts=4, top_k=1, granularity=4))
    assert fine.experts.num_experts == 16 and fine.router.top_k == 4 and fine.experts.hidden == 8
    n = sum(p.numel() for p in coarse.experts.parameters())
    assert n == sum(p.numel() for p in fine.experts.parameters())
    assert coarse.inactive_params() == fine.inactive_params() == n * 3 // 4


@pytest.mark.parametrize(
    "opts, words",
    [
        ({"num_experts": 2, "top_k": 3}, "moe.top_k=3 exceeds moe.num_experts=2"),
        ({"num_experts": 4, "router": "argmax"}, "moe.router='argmax'"),
        ({"num_experts": 4, "kernel": "magic"}, "moe.kernel='magic'"),
        ({"num_experts": 4, "capacity_factor": -1.0}, "moe.capacity_factor=-1.0"),
    ],
)
def test_bad_options_are_one_line_errors(opts, words):
    with pytest.raises(ConfigError) as e:
        MoEConfig(**opts)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_auto_kernel_choice():
    from genlab.layers.moe import Groups, auto_kernel

    w = torch.zeros(4, 8, 16, dtype=torch.float64)
    balanced, skewed = Groups.of(torch.tensor([5, 5, 5, 5])), Groups.of(torch.tensor([20, 0, 0, 0]))
    assert auto_kernel(torch.zeros(20, 8, dtype=torch.float64), balanced, w) == "bmm"
    assert auto_kernel(torch.zeros(20, 8, dtype=torch.float64), skewed, w) == "loop"  # bmm would pad to 80 rows
    if "grouped_mm" in GROUPED_LINEAR:  # grouped_mm wherever it runs (fp32, 16-byte row strides)
        assert auto_kernel(torch.zeros(20, 8), skewed, w.float()) == "grouped_mm"
        assert auto_kernel(torch.zeros(20, 8), balanced, w.float()) == "grouped_mm"
        odd = torch.zeros(4, 8, 6)  # 6 floats: a row stride grouped_mm refuses
        assert auto_kernel(torch.zeros(20, 8), balanced, odd) == "bmm"


@pytest.mark.parametrize("kernel", ["reference", *GROUPED_LINEAR])
def test_flop_counter_counts_every_kernel_alike(kernel):
    """training/flops.py measures MFU with FlopCounterMode; grouped_mm gets a formula from layers/moe.py."""
    from torch.utils.flop_counter import FlopCounterMode

    layer = make_moe(torch.float32, dim=16, hidden=32, num_experts=4, top_k=2, aux_loss_coef=0.0, kernel=kernel)
    x = torch.randn(24, 16, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    # forward, input gradient and weight gradient of: the router (N, C) x (C, E), then the N K slots
    # through fc (C -> 2H) and proj (H -> C)
    exact = 3 * 2 * (24 * 16 * 4 + 48 * 16 * 64 + 48 * 32 * 16)
    if kernel == "bmm":  # counts the padding rows too
        assert counter.get_total_flops() >= exact
    else:
        assert counter.get_total_flops() == exact
