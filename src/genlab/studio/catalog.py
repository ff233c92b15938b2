"""The runs under a folder: what the studio lists, and each run loaded once per checkpoint.

:func:`find_runs` walks RUNS_DIR for run directories (a ``config.yaml``, see :mod:`genlab.runs`);
:func:`loaded` caches :func:`genlab.runs.load_run` keyed by the run directory and the mtime of its
checkpoint pointers, so a run that trains on is reloaded when it writes a new checkpoint.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

from genlab.core.errors import CheckpointError, DataError, RunDirError
from genlab.runs import CONFIG_FILE, LoadedRun, load_run, read_run_config

MAX_DEPTH = 3  # RUNS_DIR/a/b/c/config.yaml is found, deeper is not


def find_runs(root: str | os.PathLike) -> list[str]:
    """Run directories under ``root`` (``root`` itself if it is one), as paths relative to ``root``
    ('.' for root itself), sorted. RunDirError when the folder is missing or holds no run."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RunDirError(f"{root} is not a folder: give the folder your runs are in (genlab train ... --out DIR)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if CONFIG_FILE in filenames and (here / "checkpoints").is_dir():
            found.append(here.relative_to(root).as_posix() or ".")
            dirnames.clear()  # a run's own folders hold no runs
        elif depth >= MAX_DEPTH:
            dirnames.clear()
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    if not found:
        raise RunDirError(f"no genlab runs under {root}: train one with 'genlab train RECIPE --out {root}/NAME'")
    return sorted(found)


def family(run_dir: str | os.PathLike) -> str:
    """The model family a run was trained with ('gpt', 'bert', 'vae', 'gan', 'cnn', ...)."""
    return str((read_run_config(run_dir).get("model") or {}).get("family", "unknown"))


def stamp(run_dir: str | os.PathLike) -> float:
    """The newest mtime of a run's checkpoint pointers (changes when it saves a checkpoint)."""
    root = Path(run_dir) / "checkpoints"
    times = [p.stat().st_mtime for p in (root / "best.json", root / "last.json") if p.exists()]
    if not times:
        raise CheckpointError(f"{run_dir} holds no checkpoint yet: train it first")
    return max(times)


@functools.lru_cache(maxsize=8)
def _load(run_dir: str, mtime: float) -> LoadedRun:
    return load_run(run_dir)


def loaded(run_dir: str | os.PathLike) -> LoadedRun:
    """:func:`genlab.runs.load_run` (best checkpoint), cached per run directory and checkpoint mtime."""
    path = str(Path(run_dir).resolve())
    return _load(path, stamp(path))


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of a run's metrics.jsonl (an empty list before the first log step); a broken line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written while we read
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def curves(run_dir: str | os.PathLike) -> dict[str, tuple[list[int], list[float]]]:
    """``{"train_loss": (steps, values), "val_loss": ..., ...}``: every numeric metric of metrics.jsonl
    except the bookkeeping columns (time, elapsed, lr, throughput)."""
    skip = {"step", "time", "elapsed_s", "lr", "items_per_s"}
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in read_metrics(run_dir):
        for key, value in row.items():
            if key in skip or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            steps, values = out.setdefault(key, ([], []))
            steps.append(int(row["step"]))
            values.append(float(value))
    return out


def read_results(run_dir: str | os.PathLike) -> dict:
    """A run's results.json ({} while it trains)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e
    return value if isinstance(value, dict) else {"results": value}
