"""PPO's clipped surrogate, clipped value loss and GAE on hand-made numbers."""

import math

import pytest
import torch

from genlab.objectives.policy import clipped_surrogate, clipped_value_loss, gae, masked_mean, whiten


def test_gae_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.2, 0.1]])
    adv, ret = gae(rewards, values, gamma=0.9, lam=0.8)
    # delta = r_t + 0.9 V_{t+1} - V_t, A_t = delta_t + 0.72 A_{t+1}, terminal after the last step
    expected = [0.68 + 0.72 * (-0.11 + 0.72 * 1.9), -0.11 + 0.72 * 1.9, 1.9]
    assert adv[0].tolist() == pytest.approx(expected)
    assert ret[0].tolist() == pytest.approx([e + v for e, v in zip(expected, [0.5, 0.2, 0.1])])


def test_gae_lambda_one_gamma_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, gamma=1.0, lam=1.0, mask=mask)
    assert adv[0].tolist() == pytest.approx([5.5, 4.5, 2.5, 0.0])
    assert ret[0].tolist() == pytest.approx([6.0, 5.0, 3.0, 0.0])


def test_gae_done_stops_bootstrap_and_next_value_bootstraps():
    rewards = torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[0.0, 0.0]])
    adv, _ = gae(rewards, values, gamma=0.5, lam=1.0, dones=torch.tensor([[1.0, 0.0]]), next_value=torch.tensor([4.0]))
    assert adv[0].tolist() == pytest.approx([1.0, 1.0 + 0.5 * 4.0])


def test_clipped_surrogate_by_hand():
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.5]])
    advantages = torch.tensor([[1.0, 1.0, -2.0, -1.0]])
    old = torch.zeros(1, 4)
    loss, metrics = clipped_surrogate(ratio.log(), old, advantages, clip=0.2)
    # -min(rA, clip(r)A): -1.2 (clipped above), -0.5 (unclipped below), 2.2, 0.8 (clipped, pessimistic)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.2 + 0.8) / 4)
    assert metrics["clip_frac"].item() == pytest.approx(3 / 4)


def test_clipped_surrogate_mask_and_gradient():
    logp = torch.tensor([[0.0, math.log(2.0)]], requires_grad=True)
    loss, _ = clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([[1.0, 5.0]]), 0.2, torch.tensor([[1, 0]]))
    loss.backward()
    assert loss.item() == pytest.approx(-1.0)
    assert logp.grad.tolist() == [[-1.0, 0.0]]  # d(-r A)/dlogp = -r A; the masked, clipped step has none


def test_clipped_surrogate_zero_when_unchanged_and_zero_advantage():
    logp = torch.randn(3, 5)
    loss, metrics = clipped_surrogate(logp, logp, torch.zeros(3, 5))
    assert loss.item() == 0.0 and metrics["approx_kl"].item() == 0.0


def test_clipped_value_loss_by_hand():
    values, old, returns = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), torch.tensor([1.0, 1.0])
    loss, _ = clipped_value_loss(values, old, returns, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.09 + 1.0) / 2)
    plain, _ = clipped_value_loss(values, old, returns, clip=0.0)
    assert plain.item() == pytest.approx(0.5 * (0.0 + 1.0) / 2)


def test_masked_mean_and_whiten():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(x, mask).item() == 2.0
    w = whiten(x, mask)
    assert w[0, :2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)
