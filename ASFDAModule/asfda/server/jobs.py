"""Jobs: scoring passes and fine-tuning rounds, run one at a time in a worker process.

Like MONAI Label's training tasks, the work runs in a separate process (``multiprocessing`` "spawn": a fresh
interpreter, no CUDA state inherited), so that cancelling it really stops it (the process is killed with its
children) and a crash of the GPU work never takes the backend down. The worker stays warm between jobs (its
imports and CUDA context cost seconds) and is retired after a while without work; a cancelled job's worker is
always killed, so the next job starts in a fresh process.

Files in the session's ``jobs/`` folder, one writer each::

    <id>.json           the job as the backend keeps it (state, times, worker pid)   written by the backend
    <id>.progress.json  progress fraction, message, final state and result           written by the worker
    <id>.cancel         present when the user asked to cancel                        written by the backend
    <id>.log            the worker's stdout and stderr                               written by the worker

A job found queued or running when the backend starts was cut short by a crash or a kill: it is reported
``interrupted``; the store's journal tells which round it was, and no half-written version is ever used
(see :mod:`asfda.server.job_recovery`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable

from ..session.files import write_json_atomic
from ..session.records import now_iso
from ..session.store import SessionStore
from . import processes
from .job_records import (
    Job,
    JobConflictError,
    JobFiles,
    JobKind,
    JobState,
    UnknownJobError,
    WorkerTask,
    jobs_folder,
    load_jobs,
    proposes_ahead,
    read_report,
)
from .job_recovery import close_open_rounds, recover_jobs, stop_leftover_workers, worker_death_message

log = logging.getLogger(__name__)

# the public names, those that moved to job_recovery included (callers import them from here)
__all__ = ["JobManager", "close_open_rounds", "stop_leftover_workers", "worker_death_message"]


class JobManager:
    """Queue and run jobs one after the other; report their progress; cancel them for real."""

    def __init__(
        self,
        store: SessionStore,
        device: str,
        worker: Callable,
        poll_seconds: float = 0.2,
        cancel_grace_seconds: float = 3.0,
        worker_idle_seconds: float = 300.0,
    ):
        """``worker`` is the worker process's target: ``worker(connection, parent_pid)`` receives
        :class:`WorkerTask` objects and answers each job id when that job's report is final."""
        self.store = store
        self.device = device
        self.worker = worker
        self.poll_seconds = poll_seconds
        self.cancel_grace_seconds = cancel_grace_seconds
        self.worker_idle_seconds = worker_idle_seconds
        self.folder = jobs_folder(store.root)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._changed = threading.Condition(threading.RLock())
        self._jobs = load_jobs(self.folder)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._context = multiprocessing.get_context("spawn")
        self._process = None  # the warm worker and our end of its pipe
        self._connection = None
        recover_jobs(self.store, self._jobs.values(), self._save)

    # -- queries -----------------------------------------------------------------------------------------
    def list(self) -> list[Job]:
        with self._changed:
            return [self._copy(job) for job in sorted(self._jobs.values(), key=lambda j: j.id)]

    def get(self, job_id: str) -> Job:
        with self._changed:
            job = self._jobs.get(job_id)
            if job is None:
                raise UnknownJobError(f"unknown job id {job_id!r}")
            return self._copy(job)

    def active(self, kind: JobKind | None = None) -> list[Job]:
        """Queued and running jobs (of ``kind``), oldest first."""
        return [job for job in self.list() if not job.state.finished and (kind is None or job.kind is kind)]

    def blocking(self) -> list[Job]:
        """Active jobs that hold the pool and the models: all but proposal jobs (they only read them, and a
        choice made with a model no longer active is made again)."""
        return [job for job in self.active() if job.kind is not JobKind.PROPOSE]

    # -- submission --------------------------------------------------------------------------------------
    def submit_finetune(self, options: dict) -> Job:
        with self._changed:
            running = self.active(JobKind.FINETUNE)
            if running:
                job = running[0]
                raise JobConflictError(
                    f"a fine-tuning round is already {job.state.value} (job {job.id}, "
                    f"{job.message}); wait for it to end or cancel it first"
                )
            return self._submit(JobKind.FINETUNE, options)

    def ensure_scoring(self, version: str) -> Job:
        """A job that will score ``version``: one already waiting, or running for it, else a new one."""
        with self._changed:
            for job in self.active(JobKind.SCORE):
                if job.state is JobState.QUEUED or job.model_version == version:
                    return job
            return self._submit(JobKind.SCORE, {}, model_version=version)

    def ensure_proposal(self, cases: tuple[str, ...] = ()) -> Job:
        """A job that will remake the starting-segmentation choice and build the proposals of ``cases``, or
        with none given of the next cases (``ahead``): the one waiting, given these too, else a new one."""
        ahead = not cases
        with self._changed:
            for job in self.active(JobKind.PROPOSE):
                wanted = job.options.get("cases", [])
                if job.state is JobState.QUEUED:
                    stored = self._jobs[job.id]
                    stored.options["cases"] = list(dict.fromkeys([*wanted, *cases]))
                    stored.options["ahead"] = proposes_ahead(job.options) or ahead
                    self._save(stored)
                    return self._copy(stored)
                if cases and set(cases) <= set(wanted):
                    return job
            return self._submit(JobKind.PROPOSE, {"cases": list(cases), "ahead": ahead})

    def _submit(self, kind: JobKind, options: dict, model_version: str | None = None) -> Job:
        job = Job(self._next_id(), kind, options=dict(options), model_version=model_version)
        self._jobs[job.id] = job
        self._save(job)
        self._changed.notify_all()
        log.info("job %s (%s) queued", job.id, kind.value)
        return self._copy(job)

    def _next_id(self) -> str:
        numbers = [int(job_id[1:]) for job_id in self._jobs]
        return f"j{max(numbers, default=0) + 1:04d}"

    # -- waiting and cancelling --------------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has finished, or as it is when ``timeout`` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self.get(job_id).state.finished and not self._stopping:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining if remaining is not None else 1.0)
            return self.get(job_id)

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop; the worker gets ``cancel_grace_seconds`` to stop cleanly, then it is killed."""
        with self._changed:
            job = self._jobs.get(job_id)
            if job is None:
                raise UnknownJobError(f"unknown job id {job_id!r}")
            if job.state.finished:
                return self._copy(job)
            if job.state is JobState.QUEUED:
                job.state, job.message = JobState.CANCELLED, "cancelled before it started"
                job.finished = now_iso()
            else:
                job.cancel_requested = True
                job.message = f"cancelling ({job.message})"
                JobFiles(self.folder, job.id).cancel.touch()
            self._save(job)
            self._changed.notify_all()
        return self.wait(job_id, self.cancel_grace_seconds + processes.KILL_WAIT_SECONDS + 5.0)

    # -- the dispatcher ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._dispatch, name="ASFDA jobs", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop taking jobs; a running worker is killed and its job reported interrupted."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _dispatch(self) -> None:
        try:  # warm before the first job: its imports (torch, MONAI) overlap the client adding the pool
            self._warm_worker()
        except Exception:
            log.exception("could not start the worker ahead of the first job")
        while True:
            with self._changed:
                job = self._next_queued()
                idle_since = time.monotonic()
                while job is None and not self._stopping:
                    idle = time.monotonic() - idle_since
                    if self._process is not None and idle >= self.worker_idle_seconds:
                        self._retire_worker()
                    self._changed.wait(max(self.worker_idle_seconds - idle, 0.1) if self._process else None)
                    job = self._next_queued()
                if self._stopping:
                    self._retire_worker()
                    return
                job.state, job.started, job.message = JobState.RUNNING, now_iso(), "starting the worker"
                if job.kind is JobKind.SCORE:
                    job.model_version = self.store.active_version
                self._save(job)
                self._changed.notify_all()
            try:
                self._run(job)
            except Exception as error:  # a failure to start a worker must not stop the dispatcher
                log.exception("job %s could not run", job.id)
                self._kill_worker()
                self._finish(job, JobState.FAILED, f"the worker could not run it ({error})")

    def _next_queued(self) -> Job | None:
        queued = [job for job in self._jobs.values() if job.state is JobState.QUEUED]
        # proposals yield to rounds and scoring: the model's work is what the next cases wait for
        return min(queued, key=lambda j: (j.kind is JobKind.PROPOSE, j.id)) if queued else None

    # -- the worker process ------------------------------------------------------------------------------
    def _warm_worker(self):
        """The worker process, started when there is none (or the last one died or was killed)."""
        if self._process is None or not self._process.is_alive():
            self._kill_worker()
            connection, child_end = self._context.Pipe()
            process = self._context.Process(
                target=self.worker, args=(child_end, os.getpid()), name="asfda-worker"
            )
            process.start()
            child_end.close()
            self._process, self._connection = process, connection
        return self._process, self._connection

    def _retire_worker(self) -> None:
        """Ask an idle worker to exit; kill it if it does not."""
        if self._process is None:
            return
        try:
            self._connection.send(None)
        except OSError:
            pass
        self._process.join(processes.KILL_WAIT_SECONDS)
        self._kill_worker()

    def _kill_worker(self) -> None:
        process, self._process = self._process, None
        connection, self._connection = self._connection, None
        if process is not None:
            if process.is_alive():
                processes.kill_tree(process.pid, processes.start_time(process.pid))
            process.join(processes.KILL_WAIT_SECONDS)
        if connection is not None:
            connection.close()

    def _run(self, job: Job) -> None:
        files = JobFiles(self.folder, job.id)
        files.progress.unlink(missing_ok=True)
        task = WorkerTask(str(self.store.root), job.id, job.kind, job.options, self.device, str(self.folder))
        process, connection = self._warm_worker()
        with self._changed:
            job.worker_pid, job.worker_started = process.pid, processes.start_time(process.pid)
            self._save(job)
        rounds_before = self.store.round_number
        connection.send(task)
        cancel_deadline = None
        ended = False  # the worker answered: its report is final
        answer: dict = {}
        while not ended and process.is_alive():
            try:
                if connection.poll(self.poll_seconds):
                    answer = connection.recv()
                    ended = isinstance(answer, dict) and answer.get("job") == job.id
            except (EOFError, OSError):  # the worker died
                break
            self._read_progress(job, files)
            with self._changed:
                if job.cancel_requested and cancel_deadline is None:
                    cancel_deadline = time.monotonic() + self.cancel_grace_seconds
                overdue = cancel_deadline is not None and time.monotonic() > cancel_deadline
                stop_now = (self._stopping or overdue) and not ended
            if stop_now:
                self._kill_worker()
                break
        if not ended:
            process.join(processes.KILL_WAIT_SECONDS)  # its exit code, not None
        exit_code = process.exitcode
        if not ended or job.cancel_requested:
            self._kill_worker()  # whatever is left of it; a cancelled job leaves nothing running
        report = read_report(files)
        if ended and JobState(answer.get("state", "running")).finished:
            report = answer  # the worker's own word (its progress file may not be on a full disk)
        state = JobState(report["state"]) if report.get("state") in {s.value for s in JobState} else None
        committed = job.kind is JobKind.FINETUNE and self.store.round_number > rounds_before
        if state is not None and state.finished:  # the worker finished the job and said how
            self._finish(
                job, state, report.get("message", ""), report.get("result") or {}, report.get("progress")
            )
        elif committed:  # the worker died after its round's commit step: the round stands
            self.store.remove_uncommitted()
            number, version = self.store.round_number, self.store.active_version
            self._finish(
                job,
                JobState.DONE,
                f"round {number} done: model {version} (the worker ended right after committing it)",
                {"model_version": version, "round": number},
            )
        elif job.cancel_requested:
            self._finish(job, JobState.CANCELLED, "cancelled: the worker was stopped")
        elif self._stopping:
            self._finish(job, JobState.INTERRUPTED, "interrupted: the backend stopped while this job ran")
        else:
            self._finish(job, JobState.FAILED, worker_death_message(exit_code, files))

    def _read_progress(self, job: Job, files: JobFiles) -> None:
        report = read_report(files)
        if not report or report.get("state") != JobState.RUNNING.value:
            return
        with self._changed:
            job.progress = float(report.get("progress", job.progress))
            message = str(report.get("message", job.message))
            job.message = f"cancelling ({message})" if job.cancel_requested else message
            self._changed.notify_all()

    def _finish(
        self,
        job: Job,
        state: JobState,
        message: str,
        result: dict | None = None,
        progress: float | None = None,
    ) -> None:
        if job.kind is JobKind.FINETUNE and state is not JobState.DONE:
            event = {JobState.CANCELLED: "round_cancelled", JobState.INTERRUPTED: "round_interrupted"}.get(
                state, "round_failed"
            )
            try:
                close_open_rounds(self.store, event, message)
            except Exception:
                log.exception("could not close the round of job %s in the journal", job.id)
        with self._changed:
            job.state, job.message, job.finished = state, message, now_iso()
            job.result = result or {}
            if progress is not None:
                job.progress = float(progress)
            if state is JobState.DONE:
                job.progress = 1.0
            if job.result.get("model_version"):
                job.model_version = job.result["model_version"]
            self._save(job)
            JobFiles(self.folder, job.id).cancel.unlink(missing_ok=True)
            log.info("job %s (%s, %s): %s", job.id, job.kind.value, state.value, message)
            activated = (job.result.get("metrics") or {}).get("accepted", True)
            if job.kind is JobKind.FINETUNE and state is JobState.DONE and activated and not self._stopping:
                # A new active model version: its scores are all stale, refresh them at once (unless a
                # client asked for them already). A version the guard kept back is not scored.
                self.ensure_scoring(job.model_version)
                self.ensure_proposal()  # then the starting segmentation, chosen with the new model
            self._changed.notify_all()

    # -- records -----------------------------------------------------------------------------------------
    def _save(self, job: Job) -> None:
        try:
            write_json_atomic(JobFiles(self.folder, job.id).record, job.to_json())
        except Exception:
            log.exception("could not write the record of job %s", job.id)

    @staticmethod
    def _copy(job: Job) -> Job:
        return Job.from_json(job.to_json())
