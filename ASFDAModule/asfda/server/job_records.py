"""The records of jobs: their kinds and states, the record the backend keeps of each, the files a job has
in the session's ``jobs/`` folder, and the task a worker process is sent (see ``jobs.py`` for who writes
which file)."""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import StoreError
from ..session.files import read_json
from ..session.records import now_iso

log = logging.getLogger(__name__)

JOB_FILE = re.compile(r"^(j\d+)\.json$")


class JobKind(str, Enum):
    SCORE = "score"
    FINETUNE = "finetune"
    PROPOSE = "propose"  # choose the starting segmentation and build the chosen proposals ahead


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobConflictError(Exception):
    """A job that cannot start now (HTTP 409)."""


class UnknownJobError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass
class Job:
    id: str
    kind: JobKind
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    message: str = "queued"
    model_version: str | None = None  # score: the version scored; fine-tune: the version it produced
    options: dict = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    started: str | None = None
    finished: str | None = None
    worker_pid: int | None = None
    worker_started: float | None = None
    cancel_requested: bool = False
    result: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {**asdict(self), "kind": self.kind.value, "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict) -> Job:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "kind": JobKind(data["kind"]), "state": JobState(data["state"])})


@dataclass(frozen=True)
class JobFiles:
    folder: Path
    job_id: str

    @property
    def record(self) -> Path:
        return self.folder / f"{self.job_id}.json"

    @property
    def progress(self) -> Path:
        return self.folder / f"{self.job_id}.progress.json"

    @property
    def cancel(self) -> Path:
        return self.folder / f"{self.job_id}.cancel"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.job_id}.log"


@dataclass(frozen=True)
class WorkerTask:
    """Everything a worker process needs (pickled to it)."""

    session_root: str
    job_id: str
    kind: JobKind
    options: dict
    device: str
    jobs_folder: str

    @property
    def files(self) -> JobFiles:
        return JobFiles(Path(self.jobs_folder), self.job_id)


def proposes_ahead(options: dict) -> bool:
    """Whether a proposal job also builds the next cases' proposals besides those it names: asked for, or,
    for a job recorded before the flag, when it names none."""
    return bool(options.get("ahead", not options.get("cases")))


def committed_round(job: Job, journal: list[dict]) -> dict | None:
    """The ``round_completed`` event of the round a fine-tuning job ran, when that round committed: the
    journal decides what a job achieved, whatever its record said when its backend died. The round is found
    by the job id in its ``round_started`` line (by the worker's pid in journals written before that)."""
    if job.kind is not JobKind.FINETUNE:
        return None
    started = [
        event["round"]
        for event in journal
        if event["event"] == "round_started"
        and (event.get("job") == job.id or ("job" not in event and event.get("pid") == job.worker_pid))
    ]
    if not started:
        return None
    return next(
        (e for e in journal if e["event"] == "round_completed" and e.get("round") == started[-1]), None
    )


def read_report(files: JobFiles) -> dict:
    """What the worker last wrote about its job ({} before it wrote anything)."""
    try:
        return read_json(files.progress, {}) if files.progress.is_file() else {}
    except StoreError:  # replaced while read (the next poll reads it) or cut short by a kill
        return {}


def jobs_folder(session_root: Path) -> Path:
    return Path(session_root) / "jobs"


def load_jobs(folder: Path) -> dict[str, Job]:
    jobs = {}
    for path in sorted(folder.glob("j*.json")) if folder.is_dir() else []:
        if JOB_FILE.match(path.name):
            try:
                job = Job.from_json(read_json(path))
            except (ValueError, TypeError, KeyError, OSError) as error:
                log.warning("%s: unreadable job record skipped (%s)", path, error)
                continue
            jobs[job.id] = job
    return jobs
