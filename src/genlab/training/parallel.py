"""Data parallelism across processes: DDP, or FSDP2 when one process cannot hold it all.

``train.parallel`` picks how a model is spread over the ``torchrun`` processes:

    ddp    every process holds the whole model, its gradients and its AdamW state (16 bytes per
           parameter in fp32) and all-reduces the gradients (torch DistributedDataParallel)
    fsdp   every process holds 1/N of each parameter, gradient and AdamW moment (torch FSDP2,
           ``fully_shard``, Zhao et al. 2023, arXiv:2304.11277): a block's parameters are
           all-gathered just before its forward and its backward and freed after; gradients are
           reduce-scattered, so each process steps AdamW on its own shard only
    auto   ddp while the model's training state fits in a share of the memory each process has,
           fsdp past it (:func:`choose`)

The engine knows no model family. What it shards comes from the model itself: a family that can
be sharded lists its repeated blocks in a ``shard_units()`` method (GPT and BERT: ``blocks``;
the seq2seq families: encoder and decoder blocks; a reward or value model: its backbone's). Each
unit becomes one FSDP group (one all-gather per block), and the root one more group for what is
left (embeddings, final norm, head). A family without the method is refused for fsdp.

Checkpoints do not change. A sharded model is gathered into one full state dict with torch's
``get_model_state_dict(full_state_dict=True)``, materialised on the main process into a plain
copy of the model (:func:`consolidate`), and saved as usual; the optimizer's full state is
gathered with ``get_optimizer_state_dict`` and stored under the integer keys a one-process
optimizer uses. Loading goes the other way with ``set_model_state_dict`` /
``set_optimizer_state_dict``, so a one-process checkpoint resumes under FSDP, and an FSDP
checkpoint loads in one process (``genlab sample``) or resumes under DDP.
"""

from __future__ import annotations

import copy
import functools
import os
import weakref

import torch
import torch.nn as nn
import torch.utils.checkpoint

from genlab.core.errors import ConfigError

PARALLEL = ("auto", "ddp", "fsdp")
# auto picks fsdp once the training state (fp32 parameters, gradients, two AdamW moments: 16 bytes
# per parameter) would take more than this share of the memory one process has: the rest is left
# for activations, the data and the framework.
AUTO_STATE_SHARE = 0.5
STATE_BYTES_PER_PARAM = 16

_skeletons: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_plain: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def check_parallel(name: str) -> str:
    if name not in PARALLEL:
        raise ConfigError(f"unknown train.parallel '{name}'; use {', '.join(PARALLEL)}")
    return name


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The blocks ``model`` shards one by one: its ``shard_units()``; a family without one cannot use fsdp."""
    units = getattr(model, "shard_units", None)
    if units is None:
        raise ConfigError(
            f"train.parallel=fsdp: the {type(model).__name__} family has no sharding rule (no shard_units() "
            "listing its blocks); use train.parallel=ddp"
        )
    return list(units())


def memory_per_process(device: torch.device, local_world_size: int) -> int:
    """Bytes one process may use: the GPU's memory, or this machine's available memory over its processes."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        available = info.get("MemAvailable", info["MemTotal"])
    except (OSError, KeyError, ValueError, IndexError):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return available // max(local_world_size, 1)


def choose(parallel: str, model: nn.Module, device: torch.device, local_world_size: int) -> str:
    """``ddp`` or ``fsdp`` for ``train.parallel`` (``auto``: by the memory rule above)."""
    if parallel != "auto":
        return parallel
    state = STATE_BYTES_PER_PARAM * sum(p.numel() for p in model.parameters() if p.requires_grad)
    if state <= AUTO_STATE_SHARE * memory_per_process(device, local_world_size):
        return "ddp"
    return "fsdp" if getattr(model, "shard_units", None) is not None else "ddp"


def checkpoint_activations(units: list[nn.Module]) -> None:
    """Recompute each unit's activations in the backward pass instead of keeping them
    (Chen et al. 2016, arXiv:1604.06174): the unit's forward runs under torch.utils.checkpoint.
    Module names and state-dict keys stay as they were."""
    for unit in units:
        if getattr(unit, "_genlab_checkpointed", False):
            continue
        forward = unit.forward
        unit.forward = functools.partial(torch.utils.checkpoint.checkpoint, forward, use_reentrant=False)
        unit._genlab_checkpointed = True


def _meta_skeleton(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and persistent buffers live on the meta device (no
    memory), keeping ties (one meta tensor per shared parameter) and the non-persistent buffers'
    values (rotary tables, masks: no state dict holds them)."""
    memo: dict[int, object] = {}
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None and id(p) not in memo:
                memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None and id(b) not in memo:
                keep = name in module._non_persistent_buffers_set
                memo[id(b)] = b.detach().clone() if keep else torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def shard(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Shard ``model`` in place with FSDP2 over every process of the default group (after taking the
    main process's weights): one group per unit, then the root. Parameters stay fp32 (the
    optimizer's master weights); under bf16/fp16 FSDP casts each block's gathered parameters to
    ``dtype`` for compute and reduces gradients in fp32."""
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    units = shard_units(model)
    # Start every process from the main process's weights, as DDP does (a task whose data drew from
    # the global RNG before building the model initialises it differently on each process).
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)
    skeleton = _meta_skeleton(model)
    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype != torch.float32 else None
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for unit in units:
        fully_shard(unit, **kwargs)
    fully_shard(model, **kwargs)
    _skeletons[model] = skeleton
    return model


def is_sharded(model: nn.Module) -> bool:
    return model in _skeletons


def skeleton(model: nn.Module) -> nn.Module:
    """The meta-device copy of a sharded model: its names, shapes and ties without its memory."""
    return _skeletons[model]


def plain(model: nn.Module) -> nn.Module:
    """The full copy :func:`consolidate` made of a sharded model (else ``model`` itself)."""
    return _plain.get(model, model)


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{state-dict key: the key it aliases} for parameters and buffers registered under two names."""
    first: dict[int, str] = {}
    aliases = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, t in [*module._parameters.items(), *module._buffers.items()]:
            if t is None:
                continue
            key = f"{prefix}.{name}" if prefix else name
            if id(t) in first and first[id(t)] != key:
                aliases[key] = first[id(t)]
            else:
                first.setdefault(id(t), key)
    return aliases


def _materialise(skel: nn.Module, full: dict[str, torch.Tensor]) -> nn.Module:
    """A plain module from the skeleton and a full state dict (tensors taken, not copied; ties kept)."""
    plain_copy = copy.deepcopy(skel)  # meta tensors: cheap
    made: dict[int, torch.Tensor] = {}
    for prefix, module in plain_copy.named_modules(remove_duplicate=False):
        for name, p in list(module._parameters.items()):
            if p is not None:
                key = f"{prefix}.{name}" if prefix else name
                if id(p) not in made:
                    made[id(p)] = nn.Parameter(full[key], requires_grad=p.requires_grad)
                module._parameters[name] = made[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None and name not in module._non_persistent_buffers_set:
                key = f"{prefix}.{name}" if prefix else name
                if id(b) not in made:
                    made[id(b)] = full[key]
                module._buffers[name] = made[id(b)]
    return plain_copy


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every process: gather a sharded model's full state dict (on the CPU of the main process only)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def gather(model: nn.Module, main: bool) -> nn.Module | None:
    """Every process: gather a sharded ``model``; the main process gets a plain (unsharded) copy of
    it that shares no memory with it, the others None."""
    full = full_state(model)
    return _materialise(_skeletons[model], full) if main else None


def consolidate(model: nn.Module, main: bool) -> nn.Module | None:
    """:func:`gather`, and the copy is what :func:`plain` and ``runtime.unwrap`` return from then on
    (e.g. for sampling and test metrics after training, on the main process)."""
    copy_ = gather(model, main)
    if copy_ is not None:
        _plain[model] = copy_.eval()
    return copy_


def load_full_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Every process: load a full state dict (every process holds it) into a sharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    tensors = dict(tensors)
    for alias, source in tied_aliases(_skeletons[model]).items():
        tensors.setdefault(alias, tensors[source])
    set_model_state_dict(model, tensors, options=StateDictOptions(full_state_dict=True))
    _plain.pop(model, None)


def _param_names(model: nn.Module, opt: torch.optim.Optimizer) -> list[str]:
    """The name of each parameter the optimizer holds, in its order (the integer keys of its state dict)."""
    names = {id(p): n for n, p in model.named_parameters()}
    try:
        return [names[id(p)] for g in opt.param_groups for p in g["params"]]
    except KeyError as e:
        raise ConfigError("train.parallel=fsdp: an optimizer holds parameters of another model") from e


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Every process: a sharded model's optimizer state gathered in full, keyed as a one-process
    ``optimizer.state_dict()`` is (integers in parameter order); meaningful on the main process."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    full = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    index = {name: i for i, name in enumerate(_param_names(model, opt))}
    if not full.get("state") and not full.get("param_groups"):
        return {}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in full["param_groups"]]
    return {"state": {index[n]: s for n, s in full["state"].items()}, "param_groups": groups}


def load_full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Every process: load a one-process optimizer state (integer keys; every process holds it) into
    the optimizer of a sharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _param_names(model, opt)
    by_name = {
        "state": {names[int(i)]: s for i, s in state["state"].items()},
        "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(model, opt, by_name, options=StateDictOptions(full_state_dict=True))
