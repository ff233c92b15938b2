"""Learning-rate schedules as pure functions of the step.

Linear warmup then cosine decay (Loshchilov & Hutter 2017, arXiv:1608.03983):

    lr(s) = lr_max * (s + 1) / W                                         s < W
    lr(s) = lr_min + (lr_max - lr_min) * (1 + cos(pi * (s - W) / (S - W))) / 2     W <= s <= S
    lr(s) = lr_min                                                       s > S
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def constant(step: int, lr: float, **_: object) -> float:
    return lr


SCHEDULES = {"cosine": warmup_cosine, "constant": constant}
