"""The one recipe runner: what every task does around its own data, models and losses.

    rt = Runtime.from_env(train.device, train.dtype)          # torchrun or one process
    try:
        check the run directory (refuse to clobber; --resume needs a run)
        setup = prepare(session)       # the task: data, tokenizer, models, Trainer
          session.start(config, tok)   #   create the run dir, seed, write config.yaml (+ tokenizer)
        resume from the last checkpoint (--resume)
        log one line: task, parameters, sizes, runtime, run dir
        trainer.fit(data)
        results.json: the task's test metrics + steps, time, FLOPs per item, MFU (not after Ctrl-C);
          one log line with the FLOPs and the MFU
    finally:
        rt.close()                     # also when the task raised: the process group is left

A task module is then its config dataclasses, its ``prepare`` and its ``finish``; a failure
anywhere leaves the run directory as resumable as its last checkpoint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.core.config import from_dict, save_yaml
from genlab.core.errors import ConfigError, RunDirError
from genlab.core.seed import seed_everything
from genlab.training.checkpoint import find_checkpoint
from genlab.training.engine import TrainConfig, Trainer, to_device
from genlab.training.flops import LossFn, dtype_name, measure_flops, mfu, peak_flops
from genlab.training.runtime import Runtime, unwrap

RESULTS_FILE = "results.json"


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to touch an existing run unless told to; changes nothing on disk."""
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir} holds no run to resume (no config.yaml): drop --resume to start one")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"{run_dir} already holds a run: add --resume to continue it, --overwrite to replace it, "
                "or --out to pick another directory"
            )
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir} is not empty and is not a genlab run: refusing to delete it")


def create_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if not resume and overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def flops_per_item(losses: LossFn | list[LossFn], models: dict, batch: Any, device, items: int) -> Callable[[], float]:
    """A measurement of training FLOPs per item of one step on a reference ``batch`` of ``items``
    items, taken when called (after training: it calls the loss functions once more; the plain
    modules are measured: no DDP collective, no compilation)."""
    return lambda: measure_flops(losses, {k: unwrap(m) for k, m in models.items()}, to_device(batch, device)) / items


@dataclass
class Session:
    """What a task's ``prepare`` receives: the runtime and the run directory it may start."""

    rt: Runtime
    train: TrainConfig
    run_dir: Path
    resume: bool
    overwrite: bool

    def log(self, *args: Any, **kwargs: Any) -> None:
        if self.rt.is_main:
            print(*args, **kwargs)

    def start(self, config: dict, tokenizer: Any = None) -> None:
        """Every process has read its data: create the run directory, seed the RNGs (the models
        are built next) and, on a fresh run, write ``config.yaml`` (the resolved recipe) and the tokenizer."""
        self.rt.barrier()
        if self.rt.is_main:
            create_run_dir(self.run_dir, self.resume, self.overwrite)
        seed_everything(self.train.seed)
        if self.rt.is_main and not self.resume:
            if tokenizer is not None:
                tokenizer.save(self.run_dir)
            save_yaml(config, self.run_dir / "config.yaml")


@dataclass
class Setup:
    """What a task's ``prepare`` returns to the runner."""

    trainer: Trainer
    data: Iterator
    parameters: int
    describe: str  # the task's part of the log line: sizes, vocabulary, where it started from
    flops_per_item: Callable[[], float]  # measures training FLOPs per item (token or image: the trainer's unit)
    items: Callable[[int], int]  # items (per process) of the first n steps
    finish: Callable[[Trainer], dict] | None = None  # test metrics for results.json, on the main process


def entry_point(
    task: str,
    recipe_class: type,
    prepare: Callable[[Any, Session], Setup],
    single_process: bool = False,
    check: Callable[[Any], None] | None = None,
) -> Callable[..., Trainer]:
    """A task's entry point ``train(recipe: dict, run_dir, resume=False, overwrite=False) -> Trainer``:
    the recipe dict parsed into ``recipe_class`` (unknown keys are errors), ``check``-ed, then :func:`run`
    with ``prepare(recipe, session)``."""

    def train(recipe: dict, run_dir: Path, resume: bool = False, overwrite: bool = False) -> Trainer:
        r = from_dict(recipe_class, recipe)
        if check is not None:
            check(r)
        return run(task, r.train, Path(run_dir), resume, overwrite, lambda s: prepare(r, s), single_process)

    train.__doc__ = f"Train a ``{task}`` recipe (a dict: its YAML with the overrides) into ``run_dir``."
    return train


def run(
    task: str,
    train: TrainConfig,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    prepare: Callable[[Session], Setup],
    single_process: bool = False,
) -> Trainer:
    """Run one task's training from its ``prepare`` (see the module docstring)."""
    rt = Runtime.from_env(train.device, train.dtype, train.parallel, train.activation_checkpointing)
    try:
        if single_process and rt.distributed:
            raise ConfigError(f"{task} runs in one process; start it without torchrun")
        check_run_dir(run_dir, resume, overwrite)
        session = Session(rt, train, run_dir, resume, overwrite)
        setup = prepare(session)
        trainer = setup.trainer
        if resume:
            trainer.resume(find_checkpoint(run_dir / "checkpoints", "last"), setup.data)
            session.log(f"resumed {run_dir} at step {trainer.step}")
        peak = peak_flops(rt.device, rt.dtype)
        session.log(f"{task} {setup.parameters / 1e6:.2f}M parameters | {setup.describe} | {rt.describe()} | {run_dir}")
        trainer.fit(setup.data)
        if trainer.sharded and trainer.stop_reason != "interrupted":
            trainer.consolidate()  # every process: the main one gets full copies for what follows
        if rt.is_main and trainer.stop_reason != "interrupted":
            fpi = setup.flops_per_item()
            train_flops = fpi * setup.items(trainer.step)
            use = mfu(train_flops, trainer.elapsed, peak)
            measured = {"flops_per_item": fpi, "item": trainer.unit, "train_flops": train_flops,
                        "peak_flops": peak, "peak_dtype": dtype_name(rt.dtype), "mfu": use}  # fmt: skip
            results = {
                "steps": trainer.step,
                "train_seconds": trainer.elapsed,
                "parameters": setup.parameters,
                **measured,
                **(setup.finish(trainer) if setup.finish else {}),
            }  # the task's figures win
            (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1))
            session.log(
                f"{task}: {trainer.step} steps in {trainer.elapsed:.0f}s, {fpi / 1e6:.3g} MFLOP per {trainer.unit}, "
                f"MFU {100 * use:.2f}% of a measured {peak / 1e9:.0f} GFLOP/s ({dtype_name(rt.dtype)} matmul)"
            )
        return trainer
    finally:
        rt.close()
