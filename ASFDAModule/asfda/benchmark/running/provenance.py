"""The run's provenance: what ``run.json`` says about the machine, the code and the invocations that made the
runs, kept apart from the runner that does the runs.

A benchmark is resumed, extended and its report rebuilt (``--report-only``) on other machines, so what it
records about itself has rules of its own: a rebuilt report keeps the machine and commit the runs ran on
(:func:`as_run`), every invocation that added runs is kept in order (:func:`invocations`), and the
ceiling's steps are those the saved runs had (:func:`ceiling_steps_used`). The speed benchmarks name their
commit the same way (:func:`git_commit`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ... import __version__

if TYPE_CHECKING:
    from .config import BenchmarkConfig


def git_commit(path: Path) -> str:
    """The code's commit; ``ASFDA_CODE_COMMIT`` names it when the code runs from an export (``git archive``)
    so that edits to the working tree during a long run cannot change the code the run uses."""
    if os.environ.get("ASFDA_CODE_COMMIT"):
        return os.environ["ASFDA_CODE_COMMIT"] + " (run from an export of that commit)"
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(device: str) -> dict:
    import monai

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "asfda": __version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def previous_run(run_json: Path) -> dict:
    """``run.json`` as an earlier invocation left it (empty before the first)."""
    return json.loads(run_json.read_text()) if run_json.is_file() else {}


def ceiling_steps_used(config: BenchmarkConfig, previous: dict, n_pool: int, report_only: bool) -> int:
    """The ceiling's steps as they were run: a report rebuilt from runs saved before ``ceiling_steps``
    existed names the steps those runs had (steps x rounds)."""
    if report_only and previous:
        legacy = config.all_labelled_steps or config.steps * len(config.resolved_schedule(n_pool))
        return previous.get("ceiling_steps", legacy)
    return config.ceiling_steps(config.resolved_schedule(n_pool))


def as_run(previous: dict) -> dict:
    """What a rebuilt report keeps from the run itself: where and on what it ran, not where it is rebuilt
    (a GPU run's report rebuilt on a laptop must still name the GPU machine)."""
    keys = ("dataset", "machine", "machine_summary", "git_commit", "started", "finished")
    return {key: previous[key] for key in keys if key in previous}


def invocations(previous: dict, run_info: dict, report_only: bool) -> list[dict]:
    """Every invocation that added runs to this benchmark (a resumed or extended one has several)."""
    keys = ("command", "git_commit", "started", "finished", "wall_seconds_this_invocation", "failures")
    history = previous.get("invocations") or (
        [{k: previous.get(k) for k in keys}] if previous.get("command") else []
    )
    if report_only:
        return history or [{k: run_info[k] for k in keys}]
    return [*history, {k: run_info[k] for k in keys}]


def config_json(config: BenchmarkConfig) -> dict:
    data = asdict(config)
    data["window"] = config.window.value
    return data
