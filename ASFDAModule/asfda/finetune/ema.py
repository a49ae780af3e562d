"""Exponential moving averages of a network's weights: the mean teacher of the semi-supervised part, and the
round's result (the average of the student's weights over the last steps, less noisy than its last step)."""

from __future__ import annotations

import copy
import io

import torch
from torch import nn


def copy_network(network: nn.Module) -> nn.Module:
    """An independent copy of a network's graph and weights.

    ``copy.deepcopy`` of a TorchScript module yields parameters that are not leaves (their
    ``requires_grad`` cannot be changed), so a scripted network is copied through an in-memory archive.
    """
    if isinstance(network, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(network, buffer)
        buffer.seek(0)
        device = next(network.parameters(), torch.empty(0)).device
        return torch.jit.load(buffer, map_location=device)
    return copy.deepcopy(network)


def make_teacher(student: nn.Module) -> nn.Module:
    teacher = copy_network(student).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student; buffers (BatchNorm statistics) are copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def make_average(student: nn.Module) -> nn.Module:
    """The start of the round's weight average: a frozen copy of the student."""
    return make_teacher(student)


def average_decay(step: int, decay: float) -> float:
    """The weight average's decay after ``step`` updates: min(decay, (1 + t) / (10 + t)), so the first steps
    move the average quickly and a short round's result is not its starting point."""
    return min(decay, (1.0 + step) / (10.0 + step))


def tail_mean_decay(step: int, steps: int, fraction: float) -> float:
    """The decay that makes the average the plain mean of the student's weights over the last ``fraction``
    of a round's ``steps`` (stochastic weight averaging, Izmailov et al. 2018): 0 before the tail (the
    average follows the student), then 1 - 1/n at the tail's n-th step."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tail_average_fraction must lie in (0, 1], got {fraction}")
    tail = max(1, round(steps * fraction))
    n = step - (steps - tail)
    return 0.0 if n <= 1 else 1.0 - 1.0 / n


@torch.no_grad()
def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one network (a model soup); a tensor that is not floating
    point (BatchNorm's batch count) is the first state's."""
    if not states:
        raise ValueError("no state to average")
    mean = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            stacked = torch.stack([state[name].to(first.device) for state in states])
            mean[name] = stacked.mean(0).to(first.dtype)
        else:
            mean[name] = first.clone()
    return mean
