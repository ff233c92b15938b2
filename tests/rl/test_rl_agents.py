"""Agents: rollout targets by hand, PPO's loss shared with RLHF, REINFORCE, the rollout iterator."""

import pytest
import torch

import genlab.alignment.ppo as rlhf
import genlab.objectives.policy as policy_objectives
from genlab.core.errors import ConfigError
from genlab.rl import agents
from genlab.rl.agents import AgentConfig, Rollouts, check_agent, ppo_loss, reinforce_loss, rollout_targets
from genlab.rl.envs import VecEnv
from genlab.rl.policy import ActorCritic, action_logp, entropy


def test_rollout_targets_by_hand_terminal_stops_and_time_limit_bootstraps():
    # one environment, 4 steps, reward 1 each; the episode terminates after step 1, the next is
    # cut by the time limit after step 3 in a state whose value is 2; V = 0 elsewhere.
    ones, zeros = torch.ones(1, 4), torch.zeros(1, 4)
    terminated = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    truncated = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    final_values = torch.tensor([[0.0, 0.0, 0.0, 2.0]])
    adv, ret = rollout_targets(ones, zeros, terminated, truncated, final_values, torch.tensor([10.0]), 0.5, 1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.5, 1.0, 2.0, 2.0]]))
    torch.testing.assert_close(adv, ret)  # V = 0
    # the same rollout cut by its own end (no time limit): bootstrapped from next_value
    adv, ret = rollout_targets(ones, zeros, terminated, zeros, zeros, torch.tensor([10.0]), 0.5, 1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.5, 1.0, 1.0 + 0.5 * (1 + 0.5 * 10), 1 + 0.5 * 10]]))


def test_ppo_clipped_loss_is_the_one_rlhf_uses():
    assert agents.clipped_surrogate is rlhf.clipped_surrogate is policy_objectives.clipped_surrogate
    assert agents.clipped_value_loss is rlhf.clipped_value_loss is policy_objectives.clipped_value_loss
    assert agents.gae is rlhf.gae is policy_objectives.gae
    torch.manual_seed(0)
    net = ActorCritic(4, 2)
    B = 32
    batch = {"obs": torch.randn(B, 4), "actions": torch.randint(0, 2, (B,)), "logp": torch.randn(B) * 0.1 - 0.7}
    batch.update(values=torch.randn(B), advantages=torch.randn(B), returns=torch.randn(B), env_steps=0.0)
    cfg = AgentConfig(clip=0.1, clip_value=0.0, vf_coef=1.0, ent_coef=0.01)
    loss, m = ppo_loss(net, batch, cfg)
    logits, values = net(batch["obs"])
    logp, logp_all = action_logp(logits, batch["actions"])
    ent = entropy(logp_all)
    adv = policy_objectives.whiten(batch["advantages"])
    pg, _ = policy_objectives.clipped_surrogate(logp, batch["logp"], adv, 0.1)
    vl = 0.5 * ((values - batch["returns"]) ** 2).mean()
    torch.testing.assert_close(m["policy_loss"], pg.detach())
    torch.testing.assert_close(loss, pg + vl - 0.01 * ent.mean())
    quiet, none = ppo_loss(net, {**batch, "measure": False}, cfg)  # a minibatch that reports no metrics
    torch.testing.assert_close(quiet, loss)
    assert none == {} and {"clip_frac", "approx_kl", "entropy", "value_loss"} <= set(m)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_reinforce_is_the_score_function_estimator_with_a_baseline():
    torch.manual_seed(1)
    net = ActorCritic(4, 2)
    B = 16
    returns, values = torch.randn(B), torch.randn(B)
    batch = {"obs": torch.randn(B, 4), "actions": torch.randint(0, 2, (B,)), "logp": torch.zeros(B),
             "values": values, "advantages": returns - values, "returns": returns, "env_steps": 0.0}  # fmt: skip
    cfg = AgentConfig(algo="reinforce", normalize_advantages=False, vf_coef=0.0)
    loss, _ = reinforce_loss(net, batch, cfg)
    logp, _ = action_logp(net.pi(batch["obs"]), batch["actions"])
    torch.testing.assert_close(loss, -(logp * (returns - values)).mean())


def test_rollouts_count_steps_make_minibatches_and_resume_exactly():
    cfg = AgentConfig(n_steps=8, epochs=2, minibatch_size=6)
    torch.manual_seed(0)
    net = ActorCritic(4, 2)
    data = Rollouts(VecEnv("CartPole-v1", 2, 0), net, cfg, seed=3)
    sizes, new = [], []
    for _ in range(6):  # 2 epochs x ceil(16 / 6) = 6 minibatches per rollout
        b = next(data)
        sizes.append(len(b["actions"]))
        new.append(b["new_steps"])
    assert sizes == [6, 6, 4, 6, 6, 4] and new == [16, 0, 0, 0, 0, 0] and data.env_steps == 16
    assert next(data)["new_steps"] == 16 and data.env_steps == 32  # the next rollout
    state = data.state_dict()
    again = Rollouts(VecEnv("CartPole-v1", 2, 0), net, cfg, seed=77)
    again.load_state_dict(state)
    for _ in range(9):  # across the next rollout's collection
        x, y = next(data), next(again)
        for k in Rollouts.KEYS:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def test_bad_agent_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown agent.algo 'dqn'"):
        check_agent(AgentConfig(algo="dqn"), 8)
    with pytest.raises(ConfigError, match="on-policy"):
        check_agent(AgentConfig(algo="reinforce", epochs=4), 8)
    with pytest.raises(ConfigError, match="minibatch_size"):
        check_agent(AgentConfig(n_steps=4, minibatch_size=100), 2)
