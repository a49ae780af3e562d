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

from ..finetune.settings import round_steps_given
from ..session.files import write_json_atomic
from ..session.lease import bind_to_parent
from .job_records import JobKind, JobState, WorkerTask, proposes_ahead
from .processes import exit_when_parent_dies, lead_own_process_group

REPORT_INTERVAL_SECONDS = 0.25
# Fine-tuning options a request may set; the rest come from the session's settings.
FINETUNE_OPTIONS = (
    "steps",
    "steps_per_labelled",
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
    bind_to_parent(parent_pid)  # killed with the backend (Linux); never writes the journal after it died
    exit_when_parent_dies(parent_pid)
    from ..session import session  # noqa: F401 - torch and MONAI imported before the first job, not in it

    try:
        while (task := connection.recv()) is not None:
            outcome = run_job(task)
            # The outcome goes through the pipe too: on a full disk the progress file may not be written.
            connection.send({"job": task.job_id, **outcome})
    except (EOFError, OSError):
        pass  # the backend closed its end
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk: skip the interpreter's slow teardown (torch).
    os._exit(0)


def run_job(task: WorkerTask) -> dict:
    """One job; its outcome, whatever it is, ends up in its progress file (when the disk lets it) and is
    returned: ``{"state", "message", "result"}``."""
    from ..errors import ASFDAError, CancelledError

    report = ProgressReport(task)
    result: dict = {}
    try:
        redirect_output(task.files.log)
        report.write(JobState.RUNNING, 0.0, "loading the session")
        result = run_task(task, report)
    except (CancelledError, KeyboardInterrupt) as error:
        state, message = JobState.CANCELLED, f"cancelled: {error}"
    except ASFDAError as error:
        state, message = JobState.FAILED, str(error)
    except Exception as error:
        traceback.print_exc()
        state, message = JobState.FAILED, f"{type(error).__name__}: {error} (see {task.files.log})"
    else:
        state, message = JobState.DONE, result.pop("message")
    finally:
        release_memory()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass  # a full disk: the outcome still reaches the backend through the pipe
    fraction = 1.0 if state is JobState.DONE else report.fraction
    try:
        report.write(state, fraction, message, result)
    except Exception as error:  # noqa: BLE001 - the pipe carries the outcome instead
        print(f"could not write the job's report: {error}", file=sys.__stderr__)
    return {"state": state.value, "progress": fraction, "message": message, "result": result}


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
        skipped = list(session.skipped.values())
        scored = len(session.store.cases()) - len(skipped)
        return {
            "message": f"scored {scored} cases with model {version}"
            + (f"; skipped {len(skipped)}: {'; '.join(skipped)}" if skipped else ""),
            "model_version": version,
            "ranked": len(ranking),
            "skipped": skipped,
        }
    if task.kind is JobKind.PROPOSE:
        point = session.refresh_starting_points(
            progress=report,
            cancelled=report.cancelled,
            cases=tuple(task.options.get("cases") or ()),
            ahead=proposes_ahead(task.options),
        )
        return {
            "message": point.choice.summary(),
            "model_version": point.model_version,
            "starting_from": point.to_json(),
        }
    overrides = {k: v for k, v in task.options.items() if k in FINETUNE_OPTIONS and v is not None}
    config = dataclasses.replace(session.finetune_config, **round_steps_given(overrides))
    report.write(JobState.RUNNING, 0.0, "preparing the round (scoring the pool for reliable cases)")
    version = session.finetune(config, progress=report, cancelled=report.cancelled, job_id=task.job_id)
    dice = version.metrics.get("val_dice")
    dice_text = f", validation Dice {dice:.3f}" if isinstance(dice, float) and dice == dice else ""
    if not version.metrics.get("accepted", True):
        reason = version.metrics.get("guard_reason") or "worse than its parent, which stays active"
        dice_text += f"; held back, {reason}"
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
