"""Which device the engine runs on: a CUDA GPU, Apple's MPS, or the CPU; and the CPU for what MPS lacks.

PyTorch's MPS backend does not implement every operator (some 3-D ones among them). With
``PYTORCH_ENABLE_MPS_FALLBACK=1`` (set by ``asfda`` on import, before torch) PyTorch runs such an operator on
the CPU and warns; where that is not in effect (torch imported before ``asfda``), :func:`on_device_or_cpu`
reruns the whole step on the CPU and says so. No MPS machine has run this code: the choice is tested with
MPS mocked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)
T = TypeVar("T")
_on_cpu_instead: set[str] = set()  # steps that met an operator MPS lacks: the CPU from then on


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes a CUDA GPU when there is one, else Apple's MPS when torch offers it, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"device {name!r} asked for, but no CUDA GPU is available")
    if name == "mps" and not mps_available():
        raise CheckpointError("device 'mps' asked for, but this torch offers no MPS device (Apple Silicon)")
    return torch.device(name)


def on_device_or_cpu(run: Callable[[torch.device], T], device: torch.device | str, what: str) -> T:
    """``run(device)``; on MPS, an operator it does not implement reruns ``run`` on the CPU, with a warning
    naming the operator, and later runs of ``what`` go to the CPU at once (any other error, or the same one
    on another device, is raised)."""
    device = torch.device(device)
    if device.type == "mps" and what in _on_cpu_instead:
        return run(torch.device("cpu"))
    try:
        return run(device)
    except NotImplementedError as error:
        if device.type != "mps":
            raise
        log.warning(
            "%s: an operator is not implemented on Apple's MPS device (%s); running it on the CPU instead",
            what,
            str(error).splitlines()[0],
        )
        _on_cpu_instead.add(what)
        return run(torch.device("cpu"))
