"""The training loop, written out.

One step of training runs each :class:`Phase` in order. A phase is a loss over any of
the models and the optimizer that steps on it: a language model has one phase; a GAN
has two (discriminator, then generator), each with its own optimizer. Per phase::

    zero grads
    for each of the `grad_accum` micro-batches:
        loss, metrics = phase.loss(models, batch)          # or just the loss
        (loss + metrics.get("aux_loss", 0)) / grad_accum   # mean over the global batch
          .backward()                                     # DDP syncs on the last one only
    clip the gradient norm, optimizer.step()

A loss function may return metrics beside its loss (tensors or floats; they stay tensors
until a log step, so no micro-batch waits on ``.item()``). The metric ``aux_loss`` is also
added to what is backpropagated: a mixture-of-experts balancing loss, a value-head loss,
whatever the objective reports, without the engine knowing where it came from.
``train.compile`` compiles every model the loss functions and the evaluation receive, for
every task; checkpoints hold the plain modules.

Around the steps the engine sets the learning rate (warmup + cosine), logs metrics,
evaluates, keeps the best and last checkpoints, stops cleanly on Ctrl-C (writing a
checkpoint) and resumes exactly from any checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from genlab.core.errors import GenlabError
from genlab.core.seed import rng_state, set_rng_state
from genlab.training import checkpoint as ckpt
from genlab.training import parallel as par
from genlab.training.logging import MetricsLogger, progress
from genlab.training.runtime import Runtime, unwrap
from genlab.training.schedules import SCHEDULES

LossFn = Callable[[dict[str, nn.Module], Any], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


BEST_MODES = {"min", "max"}


class TrainingError(GenlabError):
    """Training cannot go on (e.g. the loss became NaN)."""


@dataclass
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 12  # sequences (or images) per micro-batch, per process
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 100
    decay_steps: int = 0  # end of the cosine; 0 means max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 0  # 0: checkpoint at every evaluation
    best_metric: str = "val_loss"  # the evaluation metric that picks the best checkpoint
    best_mode: str = "min"  # min: lower is better (a loss); max: higher is better (accuracy, MRR)
    target: float = 0.0  # stop once best_metric reaches target (<= for min, >= for max; 0 disables)
    max_minutes: float = 0.0  # stop after this much training time (0 disables)
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # auto: $GENLAB_DTYPE if set, else bf16 on CUDA, fp32 on CPU/MPS (training/runtime.py)
    parallel: str = "auto"  # under torchrun: ddp | fsdp (FSDP2 sharding) | auto (training/parallel.py)
    activation_checkpointing: bool = False  # recompute each block's activations in backward (less memory)
    compile: bool = False
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Phase:
    loss: LossFn
    optimizer: str = "model"
    name: str = "loss"


class Trainer:
    """Trains ``models`` with ``optimizers`` through ``phases``. Knows no model family."""

    def __init__(
        self,
        models: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        phases: list[Phase],
        runtime: Runtime,
        cfg: TrainConfig,
        run_dir: Path | None = None,
        evaluate: Callable[[dict[str, nn.Module]], dict[str, float]] | None = None,
        on_eval: Callable[[int, dict[str, float]], None] | None = None,
        count: Callable[[Any], int] | None = None,
        unit: str = "tok",
        after_step: Callable[[int], None] | None = None,
    ):
        self.models, self.optimizers, self.phases = models, optimizers, phases
        self.runtime, self.cfg, self.run_dir = runtime, cfg, run_dir
        self.evaluate_fn, self.on_eval = evaluate, on_eval
        self.count = count or _count_items
        self.unit = unit  # what `count` counts, for the progress bar (tok, img, ...)
        self.after_step = after_step  # called with the step number after every optimizer step (e.g. an EMA)
        if cfg.best_mode not in BEST_MODES:
            raise GenlabError(f"train.best_mode must be one of {sorted(BEST_MODES)}, got '{cfg.best_mode}'")
        # What the loss functions and the evaluation call: compiled once if train.compile.
        self.forward_models = {k: torch.compile(m) for k, m in models.items()} if cfg.compile else models
        self.step = 0
        self.elapsed = 0.0  # seconds of training so far, across resumes
        self.best: float = self._worst()
        self.history: list[dict[str, float]] = []  # every logged row, for tests and benchmarks
        self.stop_reason: str | None = None
        self._interrupted = False
        for opt in optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])

    # --- state ---------------------------------------------------------------------------

    def _worst(self) -> float:
        return math.inf if self.cfg.best_mode == "min" else -math.inf

    def _better(self, value: float, than: float) -> bool:
        return value < than if self.cfg.best_mode == "min" else value > than

    def _reached(self, value: float) -> bool:
        return value <= self.cfg.target if self.cfg.best_mode == "min" else value >= self.cfg.target

    @property
    def sharded(self) -> bool:
        """Whether any model is FSDP-sharded (then saving and the end of training are collective)."""
        return any(par.is_sharded(m) for m in self.models.values())

    def _model_of(self, optimizer: str) -> nn.Module | None:
        """The sharded model an optimizer steps on (by name), or None when its model is not sharded."""
        model = self.models.get(optimizer)
        if model is not None and par.is_sharded(model):
            return model
        if model is None and self.sharded:
            raise GenlabError(f"train.parallel=fsdp: optimizer '{optimizer}' has no model of the same name")
        return None

    def _optimizer_state(self, name: str, opt: torch.optim.Optimizer) -> dict:
        model = self._model_of(name)
        return opt.state_dict() if model is None else par.full_optimizer_state(model, opt)

    def state_dict(self, data: Any = None) -> dict:
        """The training state; with sharded models every process must call it (it gathers)."""
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "best": self.best if math.isfinite(self.best) else None,
            "optimizers": {k: self._optimizer_state(k, o) for k, o in self.optimizers.items()},
            "rng": rng_state(),
            "config": dataclasses.asdict(self.cfg),
        }
        if data is not None and hasattr(data, "state_dict"):
            state["data"] = data.state_dict()
        return state

    def resume(self, path: Path, data: Any = None) -> None:
        """Restore weights, optimizers, RNG, data position and counters from a checkpoint (any
        checkpoint: one written by one process, by DDP or by FSDP loads into any of them)."""
        plain = {k: unwrap(m) for k, m in self.models.items() if not par.is_sharded(m)}
        state = ckpt.load_checkpoint(path, plain)
        for k, m in self.models.items():
            if par.is_sharded(m):
                skel = par.skeleton(m)
                tensors = ckpt.read_weights(skel, path / f"{k}.safetensors", tied=set(par.tied_aliases(skel)))
                par.load_full_state(m, tensors)
        for k, opt in self.optimizers.items():
            model = self._model_of(k)
            if model is None:
                ckpt.load_optimizer_state(opt, state["optimizers"][k])
            else:
                par.load_full_optimizer_state(model, opt, state["optimizers"][k])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.best = state["best"] if state["best"] is not None else self._worst()
        set_rng_state(state["rng"])
        if data is not None and "data" in state:
            data.load_state_dict(state["data"])

    def save(self, data: Any, pointers: tuple[str, ...], metrics: dict | None = None) -> None:
        if self.run_dir is None or not (self.runtime.is_main or self.sharded):
            return
        main = self.runtime.is_main  # sharded: every process gathers, the main one writes
        models = {k: par.gather(m, main) if par.is_sharded(m) else unwrap(m) for k, m in self.models.items()}
        state = self.state_dict(data)
        if main:
            ckpt.save_checkpoint(self.run_dir / "checkpoints", self.step, models, state, pointers, info=metrics)

    def consolidate(self) -> None:
        """Every process, after training: gather each sharded model into a full copy on the main
        process (``unwrap`` returns it), for what a task does there next (samples, test metrics)."""
        for m in self.models.values():
            if par.is_sharded(m):
                par.consolidate(m, self.runtime.is_main)

    # --- the loop ------------------------------------------------------------------------

    def lr_factor(self, step: int) -> float:
        c = self.cfg
        if c.schedule not in SCHEDULES:
            raise GenlabError(f"unknown schedule '{c.schedule}'; choose from {sorted(SCHEDULES)}")
        decay = c.decay_steps or c.max_steps
        return SCHEDULES[c.schedule](step, 1.0, min_lr=c.min_lr / c.lr, warmup=c.warmup_steps, decay_steps=decay)

    def _train_step(self, data: Iterator) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        c = self.cfg
        factor = self.lr_factor(self.step)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
        batches = [next(data) for _ in range(c.grad_accum)]
        ddp = [m for m in self.models.values() if isinstance(m, nn.parallel.DistributedDataParallel)]
        fsdp = [m for m in self.models.values() if par.is_sharded(m)]
        total = torch.zeros((), device=self.runtime.device)
        extras: dict[str, torch.Tensor] = {}  # summed over micro-batches, still on the device

        def add(name: str, value: Any) -> None:
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            extras[name] = extras.get(name, 0.0) + value / len(batches)

        for phase in self.phases:
            opt = self.optimizers[phase.optimizer]
            opt.zero_grad(set_to_none=True)
            for i, batch in enumerate(batches):
                batch = to_device(batch, self.runtime.device)
                with contextlib.ExitStack() as stack:
                    if i < len(batches) - 1:
                        for m in ddp:
                            stack.enter_context(m.no_sync())
                    for m in fsdp:  # reduce-scatter the gradients on the last micro-batch only
                        m.set_requires_gradient_sync(i == len(batches) - 1)
                    with self.runtime.autocast():
                        out = phase.loss(self.forward_models, batch)
                    loss, metrics = out if isinstance(out, tuple) else (out, {})
                    aux = metrics.get("aux_loss")
                    ((loss if aux is None else loss + aux) / len(batches)).backward()
                if phase is self.phases[0]:
                    total += loss.detach() / len(batches)
                for k, v in metrics.items():
                    add(k, v)
                if len(self.phases) > 1:
                    add(phase.name, loss)
            if c.grad_clip > 0:
                params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
            opt.step()
        self.step += 1
        if self.after_step is not None:
            self.after_step(self.step)
        return total, extras, sum(self.count(b) for b in batches) * self.runtime.world_size

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.evaluate_fn is None:
            return {}
        for m in self.models.values():
            m.eval()
        try:
            with self._own_rng(), self.runtime.autocast():
                return self.evaluate_fn(self.forward_models)
        finally:
            for m in self.models.values():
                m.train()

    @contextlib.contextmanager
    def _own_rng(self):
        """Evaluation and callbacks draw from a forked, fixed-seed RNG: they see the same noise at
        every evaluation, and training's random stream is the same however often they run."""
        devices = [self.runtime.device] if self.runtime.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed)
            yield

    def fit(self, data: Iterator) -> dict[str, float]:
        """Train until max_steps, the target, the time limit or Ctrl-C. Returns the last metrics."""
        c, rt = self.cfg, self.runtime
        logger = MetricsLogger(self.run_dir, c.tensorboard, enabled=rt.is_main)
        bar = progress(c.max_steps, self.step, enabled=c.progress and rt.is_main)
        restore = self._install_sigint()
        last: dict[str, float] = {}
        running, n_running, items, t_log = torch.zeros((), device=rt.device), 0, 0, self.elapsed
        for m in self.models.values():
            m.train()
        try:
            while self.step < c.max_steps and self.stop_reason is None:
                t0 = time.perf_counter()
                loss, extras, n = self._train_step(data)
                self.elapsed += time.perf_counter() - t0
                running, n_running, items = running + loss, n_running + 1, items + n  # no host sync
                bar.update(1)
                last_step = self.step == c.max_steps
                if self.step % c.log_interval == 0 or last_step:
                    mean = rt.mean(running.item() / n_running)  # over the global batch
                    if not math.isfinite(mean):
                        raise TrainingError(
                            f"loss became {mean} by step {self.step}; lower train.lr or raise train.warmup_steps "
                            "(the last good checkpoint is kept)"
                        )
                    now = self.elapsed  # training time only: evaluation and checkpoints excluded
                    rate = items / max(now - t_log, 1e-9)
                    lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    extras = {k: float(v) for k, v in extras.items()}  # the one host sync of a log step
                    last = {"train_loss": mean, "lr": lr, "items_per_s": rate, "elapsed_s": self.elapsed, **extras}
                    logger.log(self.step, last)
                    self.history.append({"step": self.step, **last})
                    bar.set_postfix(
                        {"loss": f"{mean:.4f}", f"{self.unit}/s": f"{rate:,.0f}", "lr": f"{lr:.2e}"}, refresh=False
                    )
                    running, n_running, items, t_log = torch.zeros((), device=rt.device), 0, 0, now
                if c.max_minutes and self.elapsed >= 60 * c.max_minutes:
                    self.stop_reason = f"time limit of {c.max_minutes} min"
                if rt.any(self._interrupted):
                    self.stop_reason = "interrupted"
                evaluate_now = c.eval_interval and (self.step % c.eval_interval == 0)
                if evaluate_now or last_step or self.stop_reason:
                    last = self._eval_and_checkpoint(data, logger, bar)
                elif c.checkpoint_interval and self.step % c.checkpoint_interval == 0:
                    self.save(data, ("last",))
        finally:
            bar.close()
            logger.close()
            restore()
        if self.stop_reason == "interrupted" and rt.is_main:
            bar.write(f"stopped at step {self.step}; checkpoint written, continue with --resume")
        return last

    def _eval_and_checkpoint(self, data, logger, bar) -> dict[str, float]:
        c = self.cfg
        metrics = self.evaluate()
        metrics = {k: self.runtime.mean(v) for k, v in metrics.items()}
        pointers: tuple[str, ...] = ("last",)
        value = metrics.get(c.best_metric)
        if value is not None and self._better(value, self.best):
            self.best = value
            pointers = ("last", "best")
        if metrics:
            logger.log(self.step, {**metrics, "elapsed_s": self.elapsed})
            self.history.append({"step": self.step, "elapsed_s": self.elapsed, **metrics})
            if self.runtime.is_main and c.progress:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                bar.write(f"step {self.step:>6}  {shown}  ({self.elapsed:.1f}s)")
        if self.on_eval is not None and self.runtime.is_main and not self.sharded:
            # (sharded: a callback on the main process alone would wait forever on the others'
            # all-gathers, so none runs during training; the task's end runs on consolidated copies)
            with self._own_rng():
                self.on_eval(self.step, metrics)
        if value is not None and c.target and self._reached(value) and self.stop_reason is None:
            self.stop_reason = f"reached {c.best_metric} {'<=' if c.best_mode == 'min' else '>='} {c.target}"
        self.save(data, pointers, metrics)
        return metrics

    def _install_sigint(self) -> Callable[[], None]:
        """First Ctrl-C: finish the step, checkpoint, stop. Second Ctrl-C: abort at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._interrupted:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self._interrupted = True
            if self.runtime.is_main:
                print("\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to abort)", flush=True)

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Any],
    data: Iterator,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    cfg: TrainConfig,
    **kwargs: Any,
) -> Trainer:
    """One model, one loss, one optimizer: the common case of :class:`Trainer`."""
    trainer = Trainer(
        {"model": model}, {"model": optimizer}, [Phase(lambda ms, b: loss_fn(ms["model"], b))], runtime, cfg, **kwargs
    )
    trainer.fit(data)
    return trainer


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in a batch (a tensor, or nested lists / tuples / dicts of them) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _count_items(batch: Any) -> int:
    """Tokens (or items) in a batch: the element count of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.numel()
    if isinstance(batch, (list, tuple)) and batch:
        return _count_items(batch[0])
    if isinstance(batch, dict) and batch:
        return _count_items(next(iter(batch.values())))
    return 0
