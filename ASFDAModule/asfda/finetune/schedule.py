"""The learning rate of a round: a linear warm-up (a pretrained network's first steps see gradients from an
optimiser with no moment estimates yet), then constant, or half a cosine down to zero at the last step, or
constant and then a linear anneal to zero over the round's last steps (warm-up, stable, decay: the peak rate
for most of the round, and last steps that move the weights little, so where a round ends depends less on
its last few patches)."""

from __future__ import annotations

import math

from ..config import LearningRateSchedule


def warmup_steps(steps: int, fraction: float) -> int:
    return max(int(round(steps * fraction)), 1)


def learning_rate_factor(
    index: int,
    steps: int,
    warmup_fraction: float,
    schedule: LearningRateSchedule,
    anneal_fraction: float = 0.2,
) -> float:
    """The share of the peak rate at step ``index`` (0-based) of ``steps``."""
    warmup = warmup_steps(steps, warmup_fraction)
    if index < warmup:
        return (index + 1) / warmup
    schedule = LearningRateSchedule(schedule)
    if schedule is LearningRateSchedule.CONSTANT:
        return 1.0
    if schedule is LearningRateSchedule.ANNEAL:  # the last step at 1 / (anneal + 1) of the peak, never 0
        anneal = max(int(round(steps * anneal_fraction)), 1)
        return min(1.0, (steps - index) / (anneal + 1))
    progress = (index - warmup + 1) / max(steps - warmup + 1, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
