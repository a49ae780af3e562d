"""What a backend finds of its jobs when it starts on a session an earlier backend left: the workers still
running are stopped, and each job left queued or running gets its end from the store's journal (a round the
journal shows committed stands; anything else was interrupted and nothing of it was kept)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import no_space_message
from ..session.records import now_iso
from ..session.store import SessionStore
from . import processes
from .job_records import Job, JobFiles, JobKind, JobState, committed_round, jobs_folder, load_jobs


def stop_leftover_workers(session_root: Path) -> list[int]:
    """Kill workers of an earlier backend on this session that are still running (it was killed and its
    workers' watchdogs have not fired yet). Must run before the store is opened and recovered."""
    stopped = []
    for job in load_jobs(jobs_folder(session_root)).values():
        if job.state.finished or not job.worker_pid:
            continue
        # Without a start time a reused pid could be someone else's process: leave it to the watchdog.
        if job.worker_started is not None and processes.is_running(job.worker_pid, job.worker_started):
            processes.kill_tree(job.worker_pid, job.worker_started)
            stopped.append(job.worker_pid)
    return stopped


def close_open_rounds(store: SessionStore, event: str, reason: str) -> list[int]:
    """After a fine-tuning worker was killed: end its round in the journal and drop what it half-wrote, as
    the store would on its next open; the active version stays the parent's."""
    rounds = sorted(store.open_rounds())
    for number in rounds:
        store.log(event, round=number, error=reason)
    store.remove_uncommitted()
    return rounds


def recover_jobs(store: SessionStore, jobs: Iterable[Job], save: Callable[[Job], None]) -> None:
    """Give each job an earlier backend left queued or running its end, saving each with ``save``: done when
    the journal shows its round committed, else interrupted (and nothing of it was kept)."""
    interrupted_rounds = list(store.interrupted_rounds)
    journal = store.journal()
    for job in jobs:
        if job.state.finished:
            continue
        committed = committed_round(job, journal)
        if committed is not None:  # the backend died after the round's commit step: the round stands
            mark_done_after_restart(store, job, committed, save)
            continue
        if job.state is JobState.QUEUED:
            message = "interrupted: the backend stopped before this job started"
        elif job.kind is JobKind.FINETUNE and interrupted_rounds:
            message = (
                f"interrupted: the backend stopped during round {interrupted_rounds[-1]}; nothing "
                "of that round was kept (start a new round)"
            )
        else:
            message = "interrupted: the backend stopped while this job ran; nothing of it was kept"
        job.state, job.message, job.finished = JobState.INTERRUPTED, message, now_iso()
        save(job)


def mark_done_after_restart(
    store: SessionStore, job: Job, completed: dict, save: Callable[[Job], None]
) -> None:
    """A fine-tuning job whose round the journal shows committed: the round stands."""
    version = store.version(completed["version"])
    activated = completed.get("activated", True)
    kept_back = "" if activated else "; its parent stays active (it validated worse)"
    job.state, job.progress, job.finished = JobState.DONE, 1.0, now_iso()
    job.message = (
        f"round {version.round} done: model {version.id} (the backend stopped right after committing "
        f"it{kept_back})"
    )
    job.model_version = version.id
    job.result = {"model_version": version.id, "round": version.round, "metrics": version.metrics}
    save(job)


def worker_death_message(exit_code: int | None, files: JobFiles) -> str:
    """Why a worker ended without a word: a full disk said so, else the last line of its log."""
    how = (
        f"killed by signal {-exit_code}"
        if exit_code is not None and exit_code < 0
        else f"exit code {exit_code}"
    )
    try:
        stats = os.statvfs(files.folder)
        if stats.f_bavail * stats.f_frsize < 1 << 20:
            return f"the worker process ended ({how}): {no_space_message(files.log)}"
    except (OSError, AttributeError):
        pass
    last = ""
    try:
        lines = [line for line in files.log.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else ""
    except OSError:
        pass
    return (
        f"the worker process ended unexpectedly ({how})"
        + (f"; its last words: {last[:300]}" if last else "; its log is empty")
        + f" (see {files.log})"
    )
