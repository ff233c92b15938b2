"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

Layout of a run directory's ``checkpoints/``::

    step-00001000-3f2a1c9e/      one complete checkpoint
        model.safetensors        weights of each model (``<name>.safetensors``)
        state.safetensors        tensors of the training state (optimizer moments, RNG)
        state.json               the rest of the training state, tensors referenced by key
    last.json                    {"dir": "step-...", "step": 1000, ...}
    best.json

A checkpoint directory is written under a temporary name, flushed to disk and renamed;
only then is the pointer file replaced (``os.replace`` is atomic). A process killed at
any moment therefore leaves the previous pointer naming a complete checkpoint.
Directories that no pointer names are removed after each save.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.core.errors import CheckpointError

POINTERS = ("last", "best")


# --- nested state <-> (tensors, JSON) -------------------------------------------------


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Replace every tensor in a nested structure by ``{"__tensor__": key}``."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    return obj


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state saved through :func:`flatten` (whose integer keys became strings)."""
    state = dict(state)
    state["state"] = {int(k): v for k, v in state["state"].items()}
    opt.load_state_dict(state)
    # moments were stored contiguous: give each its parameter's memory layout again (a channels-last conv
    # weight), or the optimizer's fused per-list kernels take another path and a resume is no longer exact
    for group in opt.param_groups:
        for param in group["params"]:
            for key, value in opt.state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    opt.state[param][key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


# --- model weights ---------------------------------------------------------------------


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict without aliases: a tied weight is stored once, under its first name."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.shape, t.stride()) if t.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = t.detach().cpu().contiguous()
    return out


def read_weights(model: nn.Module, path: Path, tied: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, checked against ``model``'s keys and shapes; every
    mismatch is a CheckpointError. The ``tied`` aliases may be absent (default: found by storage,
    which a model on the meta device has none of: pass them for it)."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e} (truncated or not a safetensors file)") from e
    expected = model.state_dict()
    if tied is None:
        tied = set(expected) - set(model_tensors(model))
    missing = [k for k in expected if k not in tensors and k not in tied]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(checkpoint of another architecture or config?)"
        )
    for k, t in tensors.items():
        if t.shape != expected[k].shape:
            raise CheckpointError(
                f"{path}: '{k}' has shape {tuple(t.shape)} but the model expects {tuple(expected[k].shape)}"
            )
    return tensors


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a ``.safetensors`` file into ``model``; every mismatch is a CheckpointError."""
    model.load_state_dict(read_weights(model, path), strict=False)


# --- checkpoint directories ------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    root: Path,
    step: int,
    models: dict[str, nn.Module],
    state: dict,
    pointers: tuple[str, ...] = ("last",),
    info: dict | None = None,
) -> Path:
    """Write one checkpoint under ``root`` and point ``pointers`` (last/best) at it."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}-{uuid.uuid4().hex[:8]}"
    tmp = root / f".{name}.tmp"
    tmp.mkdir()
    for model_name, model in models.items():
        save_file(model_tensors(model), str(tmp / f"{model_name}.safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    meta = flatten(state, tensors)
    save_file(tensors, str(tmp / "state.safetensors"))
    with open(tmp / "state.json", "w", encoding="utf-8") as f:
        json.dump({"step": step, "models": sorted(models), "state": meta}, f)
    for p in tmp.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    final = root / name
    os.rename(tmp, final)
    _fsync_dir(root)
    for pointer in pointers:
        _write_json(root / f"{pointer}.json", {"dir": name, "step": step, **(info or {})})
    prune(root)
    return final


def prune(root: Path) -> None:
    """Remove checkpoint directories (and stale temporaries) that no pointer names."""
    keep = {read_pointer(root, p)["dir"] for p in POINTERS if (root / f"{p}.json").exists()}
    for child in root.iterdir():
        if child.is_dir() and child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)


def read_pointer(root: Path, which: str) -> dict:
    path = root / f"{which}.json"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise CheckpointError(f"no '{which}' checkpoint in {root}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt: {e}") from e


def find_checkpoint(root: Path, which: str = "last") -> Path:
    ptr = read_pointer(root, which)
    path = root / ptr["dir"]
    if not (path / "state.json").exists():
        raise CheckpointError(f"checkpoint {path} named by {which}.json is incomplete")
    return path


def load_checkpoint(path: Path, models: dict[str, nn.Module]) -> dict:
    """Load weights into ``models`` and return the training state (nested, with tensors)."""
    try:
        with open(path / "state.json", encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path / 'state.json'}: {e}") from e
    for name, model in models.items():
        load_weights(model, path / f"{name}.safetensors")
    try:
        tensors = load_file(str(path / "state.safetensors"))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path / 'state.safetensors'}: {e}") from e
    return unflatten(meta["state"], tensors)
