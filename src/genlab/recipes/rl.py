"""Reinforcement-learning recipes: PPO / REINFORCE on a gymnasium task, and behaviour cloning.

``task: rl`` trains an agent (``agent.algo``: ppo | reinforce) on ``env.id`` through the shared
runner and engine: the engine's steps are gradient steps over minibatches of rollouts
(:class:`genlab.rl.agents.Rollouts` is its data iterator), so the run directory, metrics curves,
best / last checkpoints, Ctrl-C and exact resume are the ones of every other family. Every
``eval.interval_env_steps`` environment steps the greedy policy plays ``eval.episodes``
validation episodes (seeds from ``eval.seed``); the best checkpoint is the one with the highest
``val_return``, and training stops at ``train.target`` (the solved threshold). ``results.json``
holds the test return over ``eval.episodes`` episodes of other seeds (``eval.test_seed``), the
environment steps, env steps/s and the point where validation first reached the threshold.

``task: rl-bc`` clones an RL run's greedy policy (``bc.expert``) from ``bc.episodes`` of its
demonstrations, with the same network; ``results.json`` compares the clone and the expert on the
test episodes and off the expert's state distribution (random actions, observation noise).

Data kind: simulated environments (generated).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from genlab.core.config import from_dict, merge, to_dict
from genlab.core.errors import ConfigError
from genlab.recipes import runner
from genlab.rl.agents import ALGOS, AgentConfig, Rollouts, check_agent
from genlab.rl.bc import DemoBatches, bc_loss, demonstrations
from genlab.rl.envs import VecEnv, check_env_id
from genlab.rl.evaluate import evaluate, greedy
from genlab.rl.policy import PolicyConfig
from genlab.rl.runs import build_policy, load_agent
from genlab.training.engine import Phase, TrainConfig, Trainer
from genlab.training.optim import adamw

KIND = "generated (simulated environment)"
ADAM_EPS = 1e-5  # the PPO reference implementations' Adam epsilon


@dataclass
class EnvConfig:
    id: str = "CartPole-v1"
    n_envs: int = 8
    seed: int = 0  # seeds the training episodes (genlab.rl.envs.episode_seed)


@dataclass
class EvalConfig:
    episodes: int = 100
    seed: int = 10_000  # validation episodes, during training (what the best checkpoint and the target see)
    test_seed: int = 20_000  # test episodes, once at the end (results.json)
    interval_env_steps: int = 0  # evaluate every this many env steps (a multiple of a rollout); 0: train.eval_interval
    noise: list[float] = field(default_factory=lambda: [0.1, 0.25])  # off-distribution tests: random-action rates


def _train_defaults() -> TrainConfig:
    return TrainConfig(lr=1e-3, min_lr=0.0, warmup_steps=0, weight_decay=0.0, beta2=0.999, grad_clip=0.5,
                       best_metric="val_return", best_mode="max", eval_interval=320, log_interval=20)  # fmt: skip


@dataclass
class RLRecipe:
    task: str = "rl"
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    total_env_steps: int = 0  # > 0: train.max_steps becomes the gradient steps of this many env steps
    train: TrainConfig = field(default_factory=_train_defaults)


@dataclass
class BCConfig:
    expert: str = "runs/cartpole-ppo"  # an RL run directory (its best checkpoint plays, greedily)
    episodes: int = 10  # demonstration episodes
    seed: int = 30_000  # their seeds
    checkpoint: str = "best"


@dataclass
class BCRecipe:
    task: str = "rl-bc"
    bc: BCConfig = field(default_factory=BCConfig)
    env: EnvConfig = field(default_factory=EnvConfig)  # filled in from the expert's run
    policy: PolicyConfig = field(default_factory=PolicyConfig)  # filled in from the expert's run: the same network
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=_train_defaults)


def grad_steps_per_rollout(r: RLRecipe) -> int:
    size = r.env.n_envs * r.agent.n_steps
    return r.agent.epochs * math.ceil(size / (r.agent.minibatch_size or size))


def resolve_schedule(r: RLRecipe) -> TrainConfig:
    """train.max_steps and train.eval_interval from the env-step settings, where they are set."""
    t, size, g = r.train, r.env.n_envs * r.agent.n_steps, grad_steps_per_rollout(r)
    if r.total_env_steps:
        t = dataclasses.replace(t, max_steps=math.ceil(r.total_env_steps / size) * g)
    if r.eval.interval_env_steps:
        if r.eval.interval_env_steps % size:
            raise ConfigError(f"eval.interval_env_steps ({r.eval.interval_env_steps}) must be a multiple of a "
                              f"rollout (env.n_envs x agent.n_steps = {size})")  # fmt: skip
        t = dataclasses.replace(t, eval_interval=r.eval.interval_env_steps // size * g)
    return t


def check(r: RLRecipe) -> None:
    check_env_id(r.env.id)
    check_agent(r.agent, r.env.n_envs)
    if r.eval.episodes < 1:
        raise ConfigError(f"eval.episodes must be at least 1, got {r.eval.episodes}")


def _optimizer(policy, t: TrainConfig):
    return adamw(policy, t.lr, t.weight_decay, (t.beta1, t.beta2), eps=ADAM_EPS)


def _off_distribution(policy, env_id: str, e: EvalConfig) -> dict:
    """Test returns with a share of random actions: states the expert's own play rarely visits."""
    return {f"random_actions_{p:g}": evaluate(policy, env_id, e.episodes, e.test_seed, action_noise=p)["return_mean"]
            for p in e.noise}  # fmt: skip


def _first_solved(history: list[dict], threshold: float) -> dict:
    for row in history:
        if row.get("val_return", -math.inf) >= threshold:
            return {"solved_at_env_steps": int(row["env_steps"]), "solved_at_seconds": row["elapsed_s"]}
    return {"solved_at_env_steps": None, "solved_at_seconds": None}


def _prepare(r: RLRecipe, s: runner.Session) -> runner.Setup:
    t = resolve_schedule(r)
    spec = check_env_id(r.env.id)
    s.start(merge(to_dict(r), {"train": to_dict(t)}))
    env = VecEnv(r.env.id, r.env.n_envs, r.env.seed)
    policy = build_policy(r.env.id, r.policy)
    data = Rollouts(env, policy, r.agent, t.seed)
    algo, agent = ALGOS[r.agent.algo], r.agent
    g, size = grad_steps_per_rollout(r), data.size

    def loss(ms, batch):
        return algo(ms["model"], batch, agent)

    def validate(ms) -> dict:
        out = evaluate(ms["model"], r.env.id, r.eval.episodes, r.eval.seed)
        return {"val_return": out["return_mean"], "val_return_std": out["return_std"], "env_steps": data.env_steps}

    trainer = Trainer({"model": policy}, {"model": _optimizer(policy, t)}, [Phase(loss)], s.rt, t, run_dir=s.run_dir,
                      evaluate=validate, count=lambda b: b["new_steps"], unit="env-step")  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        best = load_agent(s.run_dir).policy
        test = evaluate(best, r.env.id, r.eval.episodes, r.eval.test_seed)
        out = {"env": r.env.id, "algo": r.agent.algo, "data_kind": KIND, "env_steps": data.env_steps,
               "env_steps_per_s": data.env_steps / max(trainer.elapsed, 1e-9), "train_episodes": data.episodes,
               "best_val_return": trainer.best if math.isfinite(trainer.best) else None,
               "solved_threshold": spec.solved,
               **_first_solved(trainer.history, spec.solved),
               "test_return_mean": test["return_mean"], "test_return_std": test["return_std"],
               "test_episodes": test["episodes"], "solved": test["return_mean"] >= spec.solved,
               "off_distribution": _off_distribution(best, r.env.id, r.eval)}  # fmt: skip
        s.log(f"{r.env.id} {r.agent.algo}: test return {test['return_mean']:.1f} +- {test['return_std']:.1f} over "
              f"{test['episodes']} episodes after {data.env_steps:,} env steps")  # fmt: skip
        env.close()
        return out

    mb = agent.minibatch_size or size
    ref = {"obs": torch.zeros(mb, env.obs_dim), "actions": torch.zeros(mb, dtype=torch.long), "logp": torch.zeros(mb),
           "values": torch.zeros(mb), "advantages": torch.linspace(-1, 1, mb), "returns": torch.zeros(mb),
           "new_steps": 0, "env_steps": 0.0}  # fmt: skip
    return runner.Setup(
        trainer, data, sum(p.numel() for p in policy.parameters()),
        f"{r.agent.algo} on {r.env.id} x {r.env.n_envs} envs, rollouts of {size} steps, {g} gradient steps each",
        runner.flops_per_item(loss, {"model": policy}, ref, s.rt.device, size / g),
        lambda steps: math.ceil(steps / g) * size, finish,
    )  # fmt: skip


def _prepare_bc(r: BCRecipe, s: runner.Session) -> runner.Setup:
    t = r.train
    expert = load_agent(r.bc.expert, r.bc.checkpoint)
    env_id = expert.env_id
    policy_cfg = from_dict(PolicyConfig, expert.config["policy"])  # the same network as the expert
    started = time.perf_counter()
    demos = demonstrations(greedy(expert.policy), env_id, r.bc.episodes, r.bc.seed)
    demo_seconds = time.perf_counter() - started
    s.start(merge(to_dict(r), {"env": {**expert.config["env"]}, "policy": to_dict(policy_cfg)}))
    policy = build_policy(env_id, policy_cfg)
    data = DemoBatches(demos, t.batch_size, t.seed)

    def loss(ms, batch):
        return bc_loss(ms["model"], batch)

    def validate(ms) -> dict:
        out = evaluate(ms["model"], env_id, r.eval.episodes, r.eval.seed)
        return {"val_return": out["return_mean"], "val_return_std": out["return_std"]}

    trainer = Trainer({"model": policy}, {"model": _optimizer(policy, t)}, [Phase(loss)], s.rt, t, run_dir=s.run_dir,
                      evaluate=validate, count=lambda b: len(b["actions"]), unit="sample")  # fmt: skip

    def finish(trainer: Trainer) -> dict:
        best = load_agent(s.run_dir).policy
        clone = evaluate(best, env_id, r.eval.episodes, r.eval.test_seed)
        teacher = evaluate(expert.policy, env_id, r.eval.episodes, r.eval.test_seed)
        out = {"env": env_id, "algo": "bc", "data_kind": KIND, "expert": str(r.bc.expert),
               "demo_episodes": r.bc.episodes, "demo_env_steps": len(demos["actions"]),
               "demo_return_mean": float(demos["returns"].mean()), "demo_seconds": demo_seconds,
               "test_return_mean": clone["return_mean"], "test_return_std": clone["return_std"],
               "expert_test_return_mean": teacher["return_mean"],
               "off_distribution": {"clone": _off_distribution(best, env_id, r.eval),
                                    "expert": _off_distribution(expert.policy, env_id, r.eval)}}  # fmt: skip
        s.log(f"{env_id} behaviour cloning from {len(demos['actions']):,} expert steps: test return "
              f"{clone['return_mean']:.1f} (expert {teacher['return_mean']:.1f})")  # fmt: skip
        return out

    ref = {"obs": torch.zeros(t.batch_size, policy.obs_dim), "actions": torch.zeros(t.batch_size, dtype=torch.long)}
    return runner.Setup(
        trainer, data, sum(p.numel() for p in policy.parameters()),
        f"behaviour cloning on {env_id}: {len(demos['actions']):,} demonstration steps from {r.bc.expert}",
        runner.flops_per_item(loss, {"model": policy}, ref, s.rt.device, t.batch_size),
        lambda steps: steps * t.batch_size, finish,
    )  # fmt: skip


def _check_bc(r: BCRecipe) -> None:
    if r.bc.episodes < 1 or r.eval.episodes < 1:
        raise ConfigError(f"bc.episodes and eval.episodes must be at least 1, got {r.bc.episodes}, {r.eval.episodes}")


train = runner.entry_point("rl", RLRecipe, _prepare, single_process=True, check=check)
train_bc = runner.entry_point("rl-bc", BCRecipe, _prepare_bc, single_process=True, check=_check_bc)
