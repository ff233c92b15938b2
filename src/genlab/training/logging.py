"""Metrics to JSONL (always) and TensorBoard (when installed), plus the progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm


class MetricsLogger:
    """Appends ``{"step": s, "time": t, ...}`` lines to ``metrics.jsonl``."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled and run_dir is not None
        self.path = run_dir / "metrics.jsonl" if run_dir is not None else None
        self.tb = None
        if self.enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.tb = None  # optional: pip install genlab[tensorboard]
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time(), 3)}
        row.update({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def progress(total: int, initial: int, enabled: bool, desc: str = "train") -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
        file=sys.stderr,
    )
