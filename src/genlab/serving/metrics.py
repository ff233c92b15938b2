"""Prometheus text exposition (format 0.0.4) of the server's counters, without a client library.

Counters and gauges are plain numbers read when /metrics is scraped; time to first token is a
histogram with fixed buckets. Each engine thread writes its own, the scrape reads them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Cumulative-bucket histogram, as Prometheus exposes it (``_bucket{le=...}``, ``_sum``, ``_count``)."""

    def __init__(self, buckets: Iterable[float] = TTFT_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.sum, self.count = 0.0, 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            for i, b in enumerate(self.buckets):
                if value <= b:
                    self.counts[i] += 1
            self.sum += value
            self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        with self._lock:
            out = [f'{name}_bucket{{{labels},le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
            out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
            out.append(f"{name}_sum{{{labels}}} {self.sum}")
            out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: list[tuple[str, str, str, list[tuple[dict[str, str], float | Histogram]]]]) -> str:
    """``[(name, type, help, [(labels, value or Histogram), ...]), ...]`` -> exposition text."""
    lines = []
    for name, kind, help_, samples in families:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            if isinstance(value, Histogram):
                lines.extend(value.lines(name, text))
            else:
                lines.append(f"{name}{{{text}}} {value}")
    return "\n".join(lines) + "\n"
