"""What runs in the worker process: jobs sent by the backend one at a time; for each, open the session, do
the work, report progress through a file.

The process stays warm between jobs (torch, MONAI and CUDA are initialised once), until the backend retires it
after a while without work, kills it to cancel a job, or dies (then the watchdog ends it too).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
import traceback

from ..session.store import write_json_atomic
from .jobs import JobKind, JobState, WorkerTask
from .processes import exit_when_parent_dies, lead_own_process_group

REPORT_INTERVAL_SECONDS = 0.25
# Fine-tuning options a request may set; the rest come from the session's settings.
FINETUNE_OPTIONS = (
    "steps",
    "learning_rate",
    "batch_size",
    "semi_supervised",
    "seed",
    "validate_every",
    "patch_size",
    "warmup_fraction",
    "adaptation",
    "accept_worse",
    "hold_out_validation",
)


class ProgressReport:
    """Writes ``jobs/<id>.progress.json`` (atomically, at most every quarter second while running)."""

    def __init__(self, task: WorkerTask):
        self.path = task.files.progress
        self.cancel_flag = task.files.cancel
        self._last = 0.0
        self.fraction = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        self.fraction = fraction
        now = time.monotonic()
        if now - self._last >= REPORT_INTERVAL_SECONDS or fraction >= 1.0:
            self._last = now
            self.write(JobState.RUNNING, fraction, message)

    def write(self, state: JobState, fraction: float, message: str, result: dict | None = None) -> None:
        write_json_atomic(
            self.path,
            {
                "state": state.value,
                "progress": max(0.0, min(1.0, float(fraction))),
                "message": message,
                "result": result or {},
                "pid": os.getpid(),
            },
        )

    def cancelled(self) -> bool:
        return self.cancel_flag.exists()


def serve_jobs(connection, parent_pid: int) -> None:
    """The worker's entry point (a ``multiprocessing`` target): run each task received on ``connection``
    and answer its job id when it is done; ``None`` or a closed pipe ends the process."""
    lead_own_process_group()
    exit_when_parent_dies(parent_pid)
    try:
        while (task := connection.recv()) is not None:
            run_job(task)
            connection.send(task.job_id)
    except (EOFError, OSError):
        pass  # the backend closed its end
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk: skip the interpreter's slow teardown (torch).
    os._exit(0)


def run_job(task: WorkerTask) -> None:
    """One job; its outcome, whatever it is, ends up in its progress file."""
    redirect_output(task.files.log)
    report = ProgressReport(task)
    report.write(JobState.RUNNING, 0.0, "loading the session")
    from ..errors import ASFDAError, CancelledError

    try:
        result = run_task(task, report)
    except (CancelledError, KeyboardInterrupt) as error:
        report.write(JobState.CANCELLED, report.fraction, f"cancelled: {error}")
    except ASFDAError as error:
        report.write(JobState.FAILED, report.fraction, str(error))
    except Exception as error:
        traceback.print_exc()
        message = f"{type(error).__name__}: {error} (see {task.files.log})"
        report.write(JobState.FAILED, report.fraction, message)
    else:
        report.write(JobState.DONE, 1.0, result.pop("message"), result)
    finally:
        release_memory()
        sys.stdout.flush()
        sys.stderr.flush()


def release_memory() -> None:
    """Give back what the job's models held, so that an idle worker keeps no GPU memory from others."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_task(task: WorkerTask, report: ProgressReport) -> dict:
    from ..session.session import AdaptationSession

    session = AdaptationSession.open(task.session_root, task.device)
    if task.kind is JobKind.SCORE:
        version = session.store.active_version
        ranking = session.rank(progress=report, cancelled=report.cancelled)
        return {
            "message": f"scored {len(session.store.cases())} cases with model {version}",
            "model_version": version,
            "ranked": len(ranking),
        }
    overrides = {k: v for k, v in task.options.items() if k in FINETUNE_OPTIONS and v is not None}
    config = dataclasses.replace(session.finetune_config, **overrides)
    report.write(JobState.RUNNING, 0.0, "preparing the round (scoring the pool for reliable cases)")
    version = session.finetune(config, progress=report, cancelled=report.cancelled)
    dice = version.metrics.get("val_dice")
    dice_text = f", validation Dice {dice:.3f}" if isinstance(dice, float) and dice == dice else ""
    if not version.metrics.get("accepted", True):
        dice_text += " (worse than its parent, which stays active; accept_worse activates it)"
    return {
        "message": f"round {version.round} done: model {version.id}{dice_text}",
        "model_version": version.id,
        "round": version.round,
        "metrics": version.metrics,
    }


def redirect_output(path) -> None:
    """The job's prints and tracebacks go to its log file, not into the backend's output."""
    global _log_stream
    stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept until the next job
    for fd in (1, 2):
        try:
            os.dup2(stream.fileno(), fd)
        except OSError:
            pass
    sys.stdout = sys.stderr = stream
    if _log_stream is not None:
        _log_stream.close()
    _log_stream = stream


_log_stream = None
