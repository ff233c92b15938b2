"""RL benchmark: environment steps and wall time to solve CartPole-v1 and Acrobot-v1 for genlab PPO
and REINFORCE against stable-baselines3 PPO, and behaviour cloning of the PPO agent (supervised vs
reinforcement learning). Prints one JSON object.

Data: gymnasium's simulated environments (generated). Every agent is checked the same way: every
``--check-every`` environment steps its greedy policy plays 100 validation episodes (seeds from
``genlab.rl.envs.episode_seed(10000, ...)``, the same episodes for every agent); it is solved when
their mean return reaches the threshold (CartPole 475, Acrobot -100). Training time excludes
these evaluations; env steps/s = training env steps / training seconds.

Agents, each on the same ``--seeds``, run one after another per seed (interleaved), one thread:

- genlab PPO: the recipe rl/cartpole-ppo (rl-zoo's tuned CartPole hyperparameters) or rl/acrobot-ppo
- genlab REINFORCE: rl/cartpole-reinforce (CartPole only)
- sb3 PPO default: stable-baselines3's PPO("MlpPolicy") with its default hyperparameters (1 env)
- sb3 PPO rl-zoo: stable-baselines3 with rl-baselines3-zoo's hyperparams/ppo.yml for CartPole-v1
  (n_envs 8, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98, n_epochs 20, ent_coef 0, linear
  schedules lr 1e-3 -> 0 and clip 0.2 -> 0): the same hyperparameters as genlab's recipe

Behaviour cloning (``--bc``): the first seed's genlab PPO agent plays ``--bc-episodes`` demonstration
episodes each; the same network is cloned from them (rl/cartpole-bc); test return (100 test
episodes) against the demonstration env steps and the wall time, and off the expert's state
distribution: with a share of random actions, for the clone and the expert.

Throughput (``--speed-rounds N``): env steps/s of ``--speed-steps`` training steps with no
evaluation, the three PPOs alternately, best of N rounds.

    python benchmarks/rl.py [--seeds 0 1 2] [--acrobot-seeds 0] [--bc] [--speed-rounds 2] [--json-out rl.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from genlab.core.config import merge
from genlab.recipes import load_recipe, run_task
from genlab.rl.envs import check_env_id
from genlab.rl.evaluate import evaluate

VAL_SEED = 10_000
ZOO_CARTPOLE = {"n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}  # fmt: skip


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def genlab_agent(recipe: str, env_id: str, seed: int, max_steps: int, every: int, episodes: int, out: Path) -> dict:
    threshold = check_env_id(env_id).solved
    over = {"env": {"seed": seed}, "total_env_steps": max_steps,
            "eval": {"episodes": episodes, "interval_env_steps": every, "seed": VAL_SEED, "noise": []},
            "train": {"seed": seed, "target": threshold, "progress": False, "tensorboard": False}}  # fmt: skip
    trainer = run_task(merge(load_recipe(recipe), over), run_dir=out)
    r = json.loads((out / "results.json").read_text())
    curve = [[int(h["env_steps"]), round(h["val_return"], 2), round(h["elapsed_s"], 2)]
             for h in trainer.history if "val_return" in h]  # fmt: skip
    return {"solved_at_env_steps": r["solved_at_env_steps"], "solved_at_seconds": r["solved_at_seconds"],
            "env_steps": r["env_steps"], "train_seconds": trainer.elapsed, "env_steps_per_s": r["env_steps_per_s"],
            "test_return_mean": r["test_return_mean"], "curve": curve}  # fmt: skip


def sb3_agent(env_id: str, seed: int, max_steps: int, every: int, episodes: int, zoo: bool) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    threshold = check_env_id(env_id).solved

    class Check(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next, self.eval_seconds, self.solved, self.stop, self.curve = every, 0.0, None, False, []

        def train_seconds(self) -> float:
            return time.perf_counter() - self.start - self.eval_seconds

        def check(self) -> None:
            t = time.perf_counter()
            act = lambda obs: self.model.predict(obs, deterministic=True)[0]
            ret = evaluate(act, env_id, episodes, VAL_SEED)["return_mean"]
            self.eval_seconds += time.perf_counter() - t
            self.curve.append([int(self.num_timesteps), round(ret, 2), round(self.train_seconds(), 2)])
            if ret >= threshold and self.solved is None:
                self.solved, self.stop = (int(self.num_timesteps), self.train_seconds()), True

        def _on_rollout_start(self) -> None:  # after the update on the last rollout
            if self.num_timesteps >= self.next:
                self.next += every
                self.check()

        def _on_step(self) -> bool:
            return not self.stop

    if zoo:
        hp = dict(ZOO_CARTPOLE)
        n_envs = hp.pop("n_envs")
        lr, clip = hp.pop("learning_rate"), hp.pop("clip_range")
        hp.update(learning_rate=lambda p: lr * p, clip_range=lambda p: clip * p)  # rl-zoo's lin_ schedules
    else:
        hp, n_envs = {}, 1
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", **hp)
    cb = Check()
    cb.start = time.perf_counter()
    model.learn(max_steps, callback=cb)
    if cb.solved is None and (not cb.curve or cb.curve[-1][0] < model.num_timesteps):
        cb.check()  # the final policy
    seconds = cb.train_seconds()
    steps = int(model.num_timesteps)
    test = evaluate(lambda obs: model.predict(obs, deterministic=True)[0], env_id, episodes, 20_000)
    return {"solved_at_env_steps": cb.solved[0] if cb.solved else None,
            "solved_at_seconds": cb.solved[1] if cb.solved else None, "env_steps": steps, "train_seconds": seconds,
            "env_steps_per_s": steps / seconds, "test_return_mean": test["return_mean"], "curve": cb.curve}  # fmt: skip


def behaviour_cloning(expert: Path, episodes: list[int], work: Path, eval_episodes: int) -> list[dict]:
    rows = []
    for n in episodes:
        out = work / f"bc-{n}"
        over = {"bc": {"expert": str(expert), "episodes": n},
                "eval": {"episodes": eval_episodes, "noise": [0.1, 0.25, 0.4]},
                "train": {"progress": False, "tensorboard": False}}  # fmt: skip
        trainer = run_task(merge(load_recipe("rl/cartpole-bc"), over), run_dir=out)
        r = json.loads((out / "results.json").read_text())
        rows.append({"demo_episodes": n, "demo_env_steps": r["demo_env_steps"],
                     "wall_seconds": round(r["demo_seconds"] + trainer.elapsed, 2),
                     "test_return_mean": r["test_return_mean"], "expert_test_return_mean": r["expert_test_return_mean"],
                     "off_distribution": r["off_distribution"]})  # fmt: skip
    return rows


def throughput(steps: int, rounds: int, work: Path) -> dict:
    """Env steps/s of a fixed training length on CartPole, no evaluation: genlab PPO (its recipe),
    sb3 PPO with rl-zoo's hyperparameters (the same) and with its defaults, alternately, best of ``rounds``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def genlab_run(i: int) -> float:
        over = {"total_env_steps": steps, "eval": {"episodes": 1, "interval_env_steps": steps, "noise": []},
                "train": {"target": 0, "progress": False, "tensorboard": False}}  # fmt: skip
        return steps / run_task(merge(load_recipe("rl/cartpole-ppo"), over), run_dir=work / f"speed-{i}").elapsed

    def sb3_run(zoo: bool) -> float:
        hp = dict(ZOO_CARTPOLE) if zoo else {"n_envs": 1}
        env = make_vec_env("CartPole-v1", n_envs=hp.pop("n_envs"), seed=0)
        model = PPO("MlpPolicy", env, seed=0, device="cpu", **hp)
        start = time.perf_counter()
        model.learn(steps)
        return steps / (time.perf_counter() - start)

    best = {"genlab-ppo": 0.0, "sb3-ppo-rl-zoo": 0.0, "sb3-ppo-default": 0.0}
    for i in range(rounds):
        best["genlab-ppo"] = max(best["genlab-ppo"], genlab_run(i))
        best["sb3-ppo-rl-zoo"] = max(best["sb3-ppo-rl-zoo"], sb3_run(True))
        best["sb3-ppo-default"] = max(best["sb3-ppo-default"], sb3_run(False))
    g, z, d = best["genlab-ppo"], best["sb3-ppo-rl-zoo"], best["sb3-ppo-default"]
    return {"env_steps": steps, "rounds": rounds, "env_steps_per_s": best, "ratio_vs_sb3_rl_zoo": g / z,
            "ratio_vs_sb3_default": g / d}  # fmt: skip


def summary(runs: list[dict]) -> dict:
    solved = [r for r in runs if r["solved_at_env_steps"] is not None]
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    return {"solved": f"{len(solved)}/{len(runs)}",
            "env_steps_to_solve": mean([r["solved_at_env_steps"] for r in solved]),
            "seconds_to_solve": mean([r["solved_at_seconds"] for r in solved]),
            "env_steps_per_s": mean([r["env_steps_per_s"] for r in runs])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="CartPole seeds (none: skip CartPole)")
    ap.add_argument("--acrobot-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--cartpole-max-steps", type=int, default=200_000)
    ap.add_argument("--reinforce-max-steps", type=int, default=300_000)
    ap.add_argument("--acrobot-max-steps", type=int, default=500_000)
    ap.add_argument("--sb3-default-max-steps", type=int, default=0, help="cap for sb3's default PPO (0: as the others)")
    ap.add_argument("--bc", action="store_true", help="also behaviour cloning of the first seed's PPO agent")
    ap.add_argument("--bc-episodes", type=int, nargs="+", default=[1, 5, 20])
    ap.add_argument("--speed-rounds", type=int, default=0, help="also env steps/s alone, alternately, best of N")
    ap.add_argument("--speed-steps", type=int, default=8192)
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="genlab-rl-bench-"))
    out: dict = {"cpu": cpu_model(), "threads": 1, "data_kind": "generated (simulated environments, gymnasium)",
                 "check": f"greedy policy, {args.episodes} validation episodes"}  # fmt: skip
    cart = {"genlab-ppo": [], "genlab-reinforce": [], "sb3-ppo-default": [], "sb3-ppo-rl-zoo": []}
    every = 8192
    cap = lambda steps: args.sb3_default_max_steps or steps
    for seed in args.seeds:
        cart["genlab-ppo"].append(genlab_agent("rl/cartpole-ppo", "CartPole-v1", seed, args.cartpole_max_steps, every,
                                               args.episodes, work / f"cartpole-ppo-{seed}"))  # fmt: skip
        cart["sb3-ppo-rl-zoo"].append(
            sb3_agent("CartPole-v1", seed, args.cartpole_max_steps, every, args.episodes, True)
        )
        cart["sb3-ppo-default"].append(
            sb3_agent("CartPole-v1", seed, cap(args.cartpole_max_steps), every, args.episodes, False)
        )
        cart["genlab-reinforce"].append(genlab_agent("rl/cartpole-reinforce", "CartPole-v1", seed,
                                                     args.reinforce_max_steps, every, args.episodes,
                                                     work / f"cartpole-reinforce-{seed}"))  # fmt: skip
        solved = {k: v[-1]["solved_at_env_steps"] for k, v in cart.items()}
        print(json.dumps({"progress": f"CartPole seed {seed}", **solved}), flush=True)
    if args.seeds:
        out["CartPole-v1"] = {"threshold": 475.0, "check_every_env_steps": every, "seeds": args.seeds,
                              "summary": {k: summary(v) for k, v in cart.items()}, "runs": cart}  # fmt: skip
        g, z, d = (out["CartPole-v1"]["summary"][k]["env_steps_per_s"]
                   for k in ("genlab-ppo", "sb3-ppo-rl-zoo", "sb3-ppo-default"))  # fmt: skip
        out["CartPole-v1"]["speed_ratio"] = {"genlab_ppo_vs_sb3_default": g / d, "genlab_ppo_vs_sb3_rl_zoo": g / z}
    if args.acrobot_seeds:
        acro = {"genlab-ppo": [], "sb3-ppo-default": []}
        every = 16384
        for seed in args.acrobot_seeds:
            acro["genlab-ppo"].append(genlab_agent("rl/acrobot-ppo", "Acrobot-v1", seed, args.acrobot_max_steps, every,
                                                   args.episodes, work / f"acrobot-ppo-{seed}"))  # fmt: skip
            acro["sb3-ppo-default"].append(sb3_agent("Acrobot-v1", seed, cap(args.acrobot_max_steps), every,
                                                     args.episodes, False))  # fmt: skip
        out["Acrobot-v1"] = {"threshold": -100.0, "check_every_env_steps": every, "seeds": args.acrobot_seeds,
                             "summary": {k: summary(v) for k, v in acro.items()}, "runs": acro}  # fmt: skip
    if args.bc and args.seeds:
        expert = work / f"cartpole-ppo-{args.seeds[0]}"
        ppo = cart["genlab-ppo"][0]
        out["supervised_vs_rl"] = {
            "expert": {"env_steps": ppo["env_steps"], "train_seconds": ppo["train_seconds"], "curve": ppo["curve"],
                       "test_return_mean": ppo["test_return_mean"]},
            "behaviour_cloning": behaviour_cloning(expert, args.bc_episodes, work, args.episodes),
        }  # fmt: skip
    if args.speed_rounds:
        out["throughput"] = throughput(args.speed_steps, args.speed_rounds, work)
    text = json.dumps(out, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
