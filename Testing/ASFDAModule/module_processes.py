"""Helpers of the tests that start processes: is a process gone, and the real backend with a tiny model."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

REAL_SERVER_MISSING = importlib.util.find_spec("asfda.server.cli") is None
needsRealBackend = pytest.mark.skipif(
    REAL_SERVER_MISSING,
    reason="the engine has no backend server yet (asfda.server.cli, the `asfda serve` command, is missing), "
    "so the real backend cannot be started",
)


def isGone(pid: int) -> bool:
    """Whether a process has stopped (a zombie has: only its exit status is left to collect)."""
    if not Path("/proc").is_dir():  # macOS: no /proc, and launchd collects exited processes at once
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def waitGone(*pids: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(isGone(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


def writeTinyModel(folder: Path, labels: dict[int, str]) -> Path:
    """A two-level MONAI UNet with random weights in the engine's model-folder format: seconds on a CPU."""
    import torch
    from asfda.models.spec import ModelSpec, NetworkSpec
    from monai.networks.nets import UNet

    kwargs = {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": max(labels) + 1,
        "channels": [4, 8],
        "strides": [2],
    }
    folder.mkdir(parents=True, exist_ok=True)
    ModelSpec(labels=labels, network=NetworkSpec("UNet", kwargs), spacing=None, roi_size=(16, 16, 16)).save(
        folder
    )
    torch.manual_seed(0)
    torch.save(UNet(**kwargs).state_dict(), folder / "model.pt")
    return folder
