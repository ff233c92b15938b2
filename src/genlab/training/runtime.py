"""Where and how training runs: device, numeric precision and process group.

``Runtime.from_env()`` reads what ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK) and
joins the process group (gloo on CPU, NCCL on CUDA).

Precision (``train.dtype``): ``fp32``, ``bf16`` or ``fp16`` force a choice; ``bf16`` and
``fp16`` mean autocast to that dtype (weights, gradients and optimizer state stay fp32).
``auto`` picks what trains faster, not what the hardware merely supports: bf16 on CUDA
devices that support it, fp32 on CPUs (also those with native bf16: it was not faster
there, see :func:`auto_dtype`) and on MPS. fp32 also keeps numbers reproducible across
process counts and machines; bf16 rounds each matmul's output to 8 significant bits, so
sums taken in another order (2 processes instead of 1) differ by ~2^-8 relative.

The environment variable ``GENLAB_DTYPE`` (fp32 | bf16 | fp16; unset, empty or ``auto``:
the rule above) sets what ``auto`` resolves to in every recipe of the process and of the
processes it starts: ``GENLAB_DTYPE=bf16 make test`` trains every test recipe that does not
pin a dtype under bf16 autocast. A recipe's explicit ``train.dtype`` still wins; a bad value
is a ConfigError. On a CPU without native bf16 (no AVX512-BF16 / AMX) PyTorch emulates bf16
with the same numbers as native bf16, but its matmuls run ~50-100x slower than fp32 (a
training step 8-100x slower); a bf16 run there warns once per process.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from genlab.core.errors import ConfigError
from genlab.training import parallel as par


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API; absent on some builds
        return False


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or mps") from e


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_ENV = "GENLAB_DTYPE"  # what dtype=auto resolves to when set
_warned_emulated_bf16 = False


def auto_dtype(device: torch.device) -> torch.dtype:
    """What ``dtype=auto`` means on ``device`` when ``GENLAB_DTYPE`` is unset: the dtype that
    trains faster, not the one the hardware merely supports (figures beside the rule)."""
    # CUDA: bf16 autocast where the GPU supports it (Ampere and later), whose tensor cores run
    # bf16 matmuls several times faster than fp32 (not measured this session: no GPU here).
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    # CPU: fp32, also on CPUs with native bf16. Tokens/s of a training step (forward, backward,
    # clip, fused AdamW; benchmarks/precision.py), fp32 vs bf16 autocast:
    # - Intel Xeon with AMX / AVX512-BF16 (from the issue; 400-step runs of gpt/nanogpt-cpu):
    #   both ~14.6k tok/s. No gain, and bf16 made 2 processes differ from 1 (weights by 5.8e-4).
    # - AMD EPYC, AVX2 without native bf16 (emulated: same numbers, slower), 1 thread:
    #   gpt-char 16x128 (gpt/shakespeare-char)         5.4k vs 0.66k  (bf16 0.12x)
    #   2-layer 24x64 (gpt/shakespeare-char-fast)     12.6k vs 1.33k  (0.11x)
    #   gpt-nano 12x64 (gpt/nanogpt-cpu)               8.2k vs 0.82k  (0.10x)
    #   2 threads (other jobs on the machine; medians of 2 rounds of 5 steps):
    #   2-layer 22.5k vs 1.9k (0.08x), gpt-nano 15.6k vs 0.90k (0.06x), gpt-char 10.3k vs
    #   0.87k (best rounds; 0.08x); GPT-2 small (124M) 1x256: 87 vs 0.9 tok/s (0.01x: ~285 s
    #   for one bf16 step).
    # GPT-2 small on AMX is not measured (no such machine this session): bf16 may pay off for
    # models that large there; ask for it with train.dtype=bf16 or GENLAB_DTYPE=bf16.
    # MPS: fp32 (bf16 autocast there is not measured).
    return torch.float32


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``fp32`` / ``bf16`` / ``fp16`` force a choice. ``auto`` -> ``$GENLAB_DTYPE`` when it is
    set, else :func:`auto_dtype` (fp32 on CPU and MPS, bf16 on CUDA that supports it)."""
    if name != "auto" and name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}'; use auto, fp32, bf16 or fp16")
    if name == "auto":
        name = os.environ.get(DTYPE_ENV, "").strip().lower() or "auto"
        if name != "auto" and name not in DTYPES:
            raise ConfigError(f"{DTYPE_ENV}='{os.environ[DTYPE_ENV]}' is not a dtype; use fp32, bf16, fp16 or auto")
        if name == "auto":
            return auto_dtype(device)
    if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return DTYPES[name]


def _warn_emulated_bf16() -> None:
    global _warned_emulated_bf16
    if _warned_emulated_bf16:  # once per process: GENLAB_DTYPE=bf16 reaches every recipe
        return
    _warned_emulated_bf16 = True
    warnings.warn(
        "this CPU has no native bf16: PyTorch emulates bf16 autocast, its matmuls ~50-100x slower than fp32 "
        "(same numbers as native bf16); use dtype=fp32 or auto for speed",
        stacklevel=3,
    )


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype  # compute dtype for autocast; float32 means autocast off
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    parallel: str = "auto"  # ddp | fsdp | auto: how wrap() spreads a model over the processes (training/parallel.py)
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    local_world_size: int = 1  # processes on this machine (torchrun's LOCAL_WORLD_SIZE)
    used: str = ""  # what wrap() chose last under torchrun: ddp or fsdp

    @classmethod
    def from_env(
        cls, device: str = "auto", dtype: str = "auto", parallel: str = "auto", activation_checkpointing: bool = False
    ) -> Runtime:
        par.check_parallel(parallel)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = pick_device(device)
        if world > 1:
            if dev.type == "cuda":
                dev = torch.device("cuda", local)
                torch.cuda.set_device(dev)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return cls(
            device=dev,
            dtype=pick_dtype(dtype, dev),
            rank=rank,
            local_rank=local,
            world_size=world,
            parallel=parallel,
            activation_checkpointing=activation_checkpointing,
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def wrap(self, model: nn.Module) -> nn.Module:
        """Move a model that trains to the device and, under torchrun, spread it over the processes:
        DistributedDataParallel, or FSDP2 sharding (``parallel``: see training/parallel.py).
        ``train.parallel=fsdp`` in one process trains unsharded, with a note (nothing to shard)."""
        model = model.to(self.device)
        if not any(p.requires_grad for p in model.parameters()):
            return model
        if self.activation_checkpointing:
            par.checkpoint_activations(par.shard_units(model))
        how = par.choose(self.parallel, model, self.device, self.local_world_size)
        if not self.distributed:
            if how == "fsdp":
                par.shard_units(model)  # a family without a sharding rule is refused here too
                _note_once("train.parallel=fsdp with one process: nothing to shard, training unsharded")
            return model
        self.used = how
        if how == "fsdp":
            return par.shard(model, self.dtype)
        ids = [self.local_rank] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float) -> float:
        """Average a Python float across processes (identity on one process)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every process if it is True on any."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t)
        return t.item() > 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group together: a rank that tears down its connections while
        another is still writing its last checkpoint can abort in the transport's threads."""
        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def describe(self) -> str:
        name = {v: k for k, v in DTYPES.items()}[self.dtype]
        extra = f", {self.world_size} processes ({self.used or self.parallel})" if self.distributed else ""
        return f"{self.device.type} {name}, {torch.get_num_threads()} threads{extra}"


_notes: set[str] = set()


def _note_once(text: str) -> None:
    if text not in _notes:
        _notes.add(text)
        warnings.warn(text, stacklevel=3)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers; for an FSDP-sharded model, the full
    copy that ``parallel.consolidate`` made of it after training (until then: the sharded model)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return par.plain(model)
