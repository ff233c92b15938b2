"""Where and how training runs: device, numeric precision and process group.

``Runtime.from_env()`` reads what ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK) and
joins the process group (gloo on CPU, NCCL on CUDA). Mixed precision is bf16 autocast
where the hardware computes bf16 natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX),
otherwise fp32: on a CPU without native bf16, PyTorch emulates bf16 matmuls ~100x slower.
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


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bf16 where native, else fp32. ``fp32`` / ``bf16`` / ``fp16`` force a choice."""
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if name not in table:
        raise ConfigError(f"unknown dtype '{name}'; use auto, fp32, bf16 or fp16")
    if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16: autocast will be very slow; use dtype=auto", stacklevel=2)
    return table[name]


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype  # compute dtype for autocast; float32 means autocast off
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, device: str = "auto", dtype: str = "auto") -> Runtime:
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
        return cls(device=dev, dtype=pick_dtype(dtype, dev), rank=rank, local_rank=local, world_size=world)

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
        """Move to the device and, under torchrun, wrap in DistributedDataParallel."""
        model = model.to(self.device)
        if self.distributed and any(p.requires_grad for p in model.parameters()):
            ids = [self.local_rank] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

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
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        extra = f", {self.world_size} processes" if self.distributed else ""
        return f"{self.device.type} {name}, {torch.get_num_threads()} threads{extra}"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
