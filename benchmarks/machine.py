"""What machine a benchmark ran on, for its JSON: ``lscpu``'s model name (the README and the
notes name the CPU by it). Imported by the benchmark scripts that sit beside it."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """``lscpu``'s "Model name", else ``platform.processor()``, else "unknown"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return names[0] if names else platform.processor() or "unknown"
