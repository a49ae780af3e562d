"""The backend's state behind the HTTP routes: one session, its path guard, its jobs, and the operations
the routes call (each raises the engine's errors or an ``HTTPException``; ``app.py`` maps them)."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from fastapi import HTTPException

from .. import __version__
from ..errors import ASFDAError, MaskError, StoreError, VolumeReadError
from ..io.headers import DEFAULT_MAX_VOXELS
from ..io.volumes import VOLUME_SUFFIXES, case_name, content_hash, read_volume, volume_suffix
from ..scoring.query import RankedCase
from ..session.records import CaseRecord
from ..session.session import AdaptationSession
from . import ranking as ranking_views
from . import schemas
from .job_records import JobState
from .jobs import JobManager, stop_leftover_workers
from .paths import PathForbiddenError, PathGuard
from .uploads import safe_file_name, save_upload, upload_case_name
from .worker import serve_jobs

log = logging.getLogger(__name__)


class PredictionFormat(str, Enum):
    NIFTI = "nii.gz"
    SEG_NRRD = "seg.nrrd"


@dataclass
class ServerSettings:
    max_upload_bytes: int = 2 * 2**30
    trust_bundle_code: bool = False  # a session created here may run its bundle's code (--trust-bundle-code)
    cancel_grace_seconds: float = 3.0
    ranking_wait_seconds: float = 3600.0
    poll_seconds: float = 0.2
    worker_idle_seconds: float = 300.0  # a warm worker without work for this long is retired
    max_voxels: int = DEFAULT_MAX_VOXELS  # decoded size bound, checked from the header before reading
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the loopback ones (a reverse proxy's)


MAX_SCORING_PASSES = 5


def problem_of(error: ASFDAError) -> str:
    """The engine's message without the file it names (for messages that name the file the user knows)."""
    text = str(error)
    prefix = f"{error.path}: " if error.path is not None else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def open_session(
    root: Path, model: str | Path | None, device: str, trust_bundle_code: bool = False
) -> AdaptationSession:
    if (root / "session.json").is_file():
        return AdaptationSession.open(root, device)
    if model is None:
        raise StoreError("no ASFDA session here: start the backend with --model MODEL to create one", root)
    return AdaptationSession.create(root, model, device, trust_bundle_code=trust_bundle_code)


class Backend:
    def __init__(
        self, session: AdaptationSession, guard: PathGuard, settings: ServerSettings, jobs: JobManager
    ):
        self.session = session
        self.store = session.store
        self.guard = guard
        self.settings = settings
        self.jobs = jobs
        self.model_lock = threading.Lock()  # one in-process prediction at a time (the model is shared)
        self.serve_lock = threading.Lock()  # choosing and marking the next case is one step
        self._ranking_memo: tuple[tuple, list[RankedCase]] | None = None

    @classmethod
    def open(
        cls,
        session_dir: str | Path,
        allowed_dirs=(),
        model: str | Path | None = None,
        device: str = "auto",
        settings: ServerSettings | None = None,
    ) -> Backend:
        root = Path(session_dir).resolve()
        settings = settings or ServerSettings()
        if (root / "session.json").is_file():
            stopped = stop_leftover_workers(root)  # before the store recovers what they left
            if stopped:
                log.warning("stopped worker processes %s left by an earlier backend on %s", stopped, root)
        session = open_session(root, model, device, settings.trust_bundle_code)
        jobs = JobManager(
            session.store,
            str(session.device),
            serve_jobs,
            poll_seconds=settings.poll_seconds,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            worker_idle_seconds=settings.worker_idle_seconds,
        )
        return cls(session, PathGuard(root, allowed_dirs), settings, jobs)

    # -- info --------------------------------------------------------------------------------------------
    def info(self) -> schemas.Info:
        import monai
        import torch

        device = self.session.device
        gpu_name = gpu_free = None
        if device.type == "cuda":
            gpu_name = torch.cuda.get_device_name(device)
            gpu_free = torch.cuda.mem_get_info(device)[0] / 2**20
        active = self.store.active_version
        return schemas.Info(
            version=__version__,
            device=str(device),
            gpu_name=gpu_name,
            gpu_free_mb=gpu_free,
            torch=torch.__version__,
            monai=monai.__version__,
            model_version=active,
            round=self.store.round_number,
            labels={str(k): v for k, v in self.session.labels.items()},
            session=str(self.store.root),
            model_source=str(self.store.settings.get("model_source", "")),
            max_upload_mb=self.settings.max_upload_bytes / 2**20,
        )

    # -- cases -------------------------------------------------------------------------------------------
    def cases(self) -> list[schemas.Case]:
        records = self.store.cases()
        labelled = set(self.store.labelled_ids())
        pool = ranking_views.cached_scores(
            self.store, self.store.active_version, records, self.session.query_config.strategy
        )
        ranked = self._rank(pool, records, labelled) if pool.complete else None
        return ranking_views.case_views(self.store, records, pool, labelled, ranked)

    def case(self, case_id: str) -> schemas.Case:
        self.store.case(case_id)
        return next(view for view in self.cases() if view.id == case_id)

    def add_path(self, path: str) -> list[schemas.Case]:
        resolved = self.guard.check(path)
        if not resolved.exists():
            raise HTTPException(404, f"{path}: no such file")
        if resolved.is_dir():
            raise HTTPException(422, f'{path}: a folder; send it as {{"folder": ...}}')
        return self._add_records([self._record(resolved)])

    def read_added(self, path: Path):
        """A volume named by a request: its detached data file (if any) confined like the path itself."""
        return read_volume(
            path,
            data_roots=self.guard.roots,
            max_voxels=self.settings.max_voxels,
            components=self.session.in_channels,  # a 4-D or vector file for a model of several channels
        )

    def add_folder(self, folder: str) -> list[schemas.Case]:
        resolved = self.guard.check(folder)
        if not resolved.is_dir():
            raise HTTPException(404 if not resolved.exists() else 422, f"{folder}: not a folder")
        files = sorted(p for p in resolved.iterdir() if p.is_file() and volume_suffix(p) in VOLUME_SUFFIXES)
        if not files:
            raise HTTPException(422, f"{folder}: no volumes ({', '.join(VOLUME_SUFFIXES)}) in this folder")
        # Every file is read and checked before any is added: a bad file leaves the pool as it was.
        return self._add_records([self._record(self.guard.check(path)) for path in files])

    def _record(self, path: Path) -> CaseRecord:
        # As AdaptationSession.add_volume does, split so that a whole folder is checked before it is added.
        return CaseRecord(content_hash(self.read_added(path)), case_name(path), str(path))

    def _add_records(self, records: list[CaseRecord]) -> list[schemas.Case]:
        ids = [self.store.add_case(record).id for record in records]
        views = {view.id: view for view in self.cases()}
        return [views[case_id] for case_id in dict.fromkeys(ids)]

    def upload_case(self, file_name: str | None, stream: BinaryIO) -> schemas.Case:
        name = self._upload_name(file_name)
        saved = save_upload(stream, self._uploads(), name, prefix="case-")
        try:
            # An upload is one file: a header naming a data file elsewhere is refused (data_roots=()).
            image = read_volume(
                saved, data_roots=(), max_voxels=self.settings.max_voxels, components=self.session.in_channels
            )
        except VolumeReadError as error:
            saved.unlink(missing_ok=True)
            raise HTTPException(422, f"uploaded file {file_name!r}: {problem_of(error)}") from error
        case_id = content_hash(image)
        if any(r.id == case_id for r in self.store.cases()):
            saved.unlink(missing_ok=True)
            return self.case(case_id)
        try:
            target = self.guard.in_session(self.store.root / "images" / case_id / name)
        except PathForbiddenError:
            saved.unlink(missing_ok=True)
            raise
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(saved, target)
        self.store.add_case(CaseRecord(case_id, upload_case_name(file_name), str(target)))
        return self.case(case_id)

    def submit_label(self, case_id: str, file_name: str | None, stream: BinaryIO) -> schemas.Case:
        record = self.store.case(case_id)
        name = self._upload_name(file_name)
        self.guard.in_session(self.store.final_label_path(case_id))
        saved = save_upload(stream, self._uploads(), name, prefix=f"label-{case_id}-")
        try:
            self.session.submit_label(case_id, saved, data_roots=(), max_voxels=self.settings.max_voxels)
        except MaskError as error:
            raise HTTPException(
                422, f"mask {file_name!r} for case {record.name} ({case_id}): {problem_of(error)}"
            ) from error
        finally:
            # Kept only until the mask is stored (or refused): it is the annotator's work during the check.
            saved.unlink(missing_ok=True)
        return self.case(case_id)

    def remove_case(self, case_id: str) -> schemas.Case:
        """Take a case out of the pool (a volume the model cannot use, or added by mistake)."""
        view = self.case(case_id)
        busy = self.jobs.active()
        if busy:
            raise HTTPException(
                409,
                f"case {view.name} ({case_id}) cannot be removed while job {busy[0].id} "
                f"({busy[0].kind.value}) is {busy[0].state.value}: wait for it to end or cancel it",
            )
        with self.serve_lock:
            self.session.remove_case(case_id)
        return view

    def _uploads(self) -> Path:
        return self.guard.in_session(self.store.root / "uploads")

    @staticmethod
    def _upload_name(file_name: str | None) -> str:
        try:
            return safe_file_name(file_name)
        except ValueError as error:
            raise HTTPException(422, str(error)) from error

    def image_file(self, case_id: str) -> tuple[Path, str]:
        """The case's volume as ``.nii.gz``: the source file itself when it is one, else a converted copy."""
        record = self.store.case(case_id)
        source = Path(record.source_path)
        if not source.is_file():
            raise HTTPException(404, f"{source}: the volume file of case {record.name} ({case_id}) is gone")
        # A link replacing it (or a folder above it) is followed before the check.
        source = (
            self.guard.in_session(source)
            if source.is_relative_to(self.store.root)
            else self.guard.check(source)
        )
        if volume_suffix(source) == ".nii.gz":
            return source, f"{record.name}.nii.gz"
        converted = self.guard.in_session(self.store.root / "images" / "nifti" / f"{case_id}.nii.gz")
        if not converted.is_file():
            from ..io.volumes import write_volume

            write_volume(read_volume(source, components=self.session.in_channels), converted)
        return converted, f"{record.name}.nii.gz"

    def prediction_file(self, case_id: str, file_format: PredictionFormat) -> tuple[Path, str, str]:
        """A label map of a case on the case's grid and the model version that made it: the one the scoring
        of the pool kept (at once, also while a round or a rescoring runs), else the active model's,
        computed once per version."""
        record = self.store.case(case_id)
        saved = self.session.saved_prediction(case_id)
        if saved is None:
            with self.model_lock:
                version = self.store.active_version
                self.guard.in_session(self.store.predicted_label_path(case_id, version))  # before writing
                saved = version, self.session.write_prediction(case_id)
        version, path = saved
        path = self.guard.in_session(path)
        if file_format is PredictionFormat.SEG_NRRD:
            self.guard.in_session(path.with_name(path.name.replace(".nii.gz", ".seg.nrrd")))  # before writing
            path = self.guard.in_session(self.session.segmentation_file(path))
        return path, f"{record.name}_prediction_{version}.{file_format.value}", version

    # -- ranking and serving -----------------------------------------------------------------------------
    def ranking(self, wait: bool = True) -> schemas.Ranking:
        pool, records, labelled, ranked, job = self._complete_ranking(wait)
        version = pool.version
        name = {r.id: r.name for r in records}
        return schemas.Ranking(
            model_version=version,
            round=self.store.version(version).round,
            cases=ranking_views.case_views(self.store, records, pool, labelled, ranked),
            next=ranking_views.next_case_id(ranked, records, labelled) if ranked is not None else None,
            complete=pool.complete,
            job=None if job is None else schemas.Job.of(job),
            skipped=[
                f"{name.get(case_id, case_id)} ({case_id}): {reason}"
                for case_id, reason in pool.skipped.items()
            ],
        )

    def next_case(self, client: str) -> schemas.Case:
        """The case to annotate next, at once from the last complete ranking (the active version's, else,
        while it is being scored, the previous version's with the cases labelled since taken out and their
        embeddings counted for diversity); only the very first scoring of a pool is waited for."""
        if self._serving_pool() is None:
            self._complete_ranking(wait=True)
        with self.serve_lock:
            records = self.store.cases()
            labelled = set(self.store.labelled_ids())
            pool = self._serving_pool(records)
            if pool is None:
                raise HTTPException(409, "the pool changed while it was scored: ask again")
            ranked = self._rank(pool, records, labelled)
            record = self.session.next_case(ranked)
            if record is None:
                raise HTTPException(
                    404,
                    "no unlabelled case left to annotate" if records else "no cases yet: add volumes first",
                )
            self.store.log("case_served", case=record.id, client=client, model_version=pool.version)
            views = ranking_views.case_views(self.store, self.store.cases(), pool, labelled, ranked)
        return next(view for view in views if view.id == record.id)

    def _serving_pool(self, records: list[CaseRecord] | None = None) -> ranking_views.PoolScores | None:
        """The cached scores ``next`` serves from: the active version's when complete; else (their scoring
        is started or joined) the newest earlier version's that cover the pool; None before any."""
        records = self.store.cases() if records is None else records
        strategy = self.session.query_config.strategy
        active = self.store.active_version
        pool = ranking_views.cached_scores(self.store, active, records, strategy)
        if pool.complete:
            return pool
        self.jobs.ensure_scoring(active)
        earlier = [v.id for v in reversed(self.store.versions()) if v.id != active]
        return ranking_views.last_complete_pool(self.store, records, strategy, earlier)

    def _complete_ranking(self, wait: bool):
        """Cached scores of the active version, scoring them first (as a job) when some are missing."""
        deadline = time.monotonic() + self.settings.ranking_wait_seconds
        for _ in range(MAX_SCORING_PASSES):  # more passes only when cases arrive while the pool is scored
            records = self.store.cases()
            labelled = set(self.store.labelled_ids())
            version = self.store.active_version
            pool = ranking_views.cached_scores(
                self.store, version, records, self.session.query_config.strategy
            )
            if pool.complete:
                return pool, records, labelled, self._rank(pool, records, labelled), None
            job = self.jobs.ensure_scoring(version)
            if not wait:
                return pool, records, labelled, None, job
            job = self.jobs.wait(job.id, max(deadline - time.monotonic(), 0.0))
            if not job.state.finished:
                raise HTTPException(409, f"scoring job {job.id} is still running ({job.message}); ask later")
            if job.state is not JobState.DONE:
                raise HTTPException(409, f"scoring job {job.id} {job.state.value}: {job.message}")
        raise HTTPException(
            409, f"the pool kept changing during {MAX_SCORING_PASSES} scoring passes: ask again"
        )

    def _rank(self, pool, records: list[CaseRecord], labelled: set[str]) -> list[RankedCase]:
        config = self.session.query_config
        key = (
            pool.version,
            tuple((r.id, r.last_served) for r in records),
            frozenset(labelled),
            config.strategy,
            config.budget,
        )
        memo = self._ranking_memo
        if memo is not None and memo[0] == key:
            return memo[1]
        ranked = ranking_views.rank_cached(pool, records, labelled, config)
        self._ranking_memo = (key, ranked)
        return ranked

    # -- models ------------------------------------------------------------------------------------------
    def versions(self) -> list[schemas.ModelVersion]:
        active = self.store.active_version
        return [
            schemas.ModelVersion(
                id=v.id,
                parent=v.parent,
                created=v.created,
                round=v.round,
                metrics=schemas.finite_tree(v.metrics),
                active=v.id == active,
            )
            for v in self.store.versions()
        ]

    # -- query -------------------------------------------------------------------------------------------
    def query_settings(self) -> schemas.QuerySettings:
        config = self.session.query_config
        return schemas.QuerySettings(strategy=config.strategy, budget=config.budget)

    def set_query(self, request: schemas.QueryRequest) -> schemas.QuerySettings:
        """A new strategy ranks from the cached scores; one that needs other scores (epistemic) starts a
        scoring job at the next ranking."""
        with self.serve_lock:
            self.session.set_query(request.strategy, request.budget)
        return self.query_settings()

    def activate(self, version_id: str) -> schemas.ModelVersion:
        if version_id not in {v.id for v in self.store.versions()}:
            raise HTTPException(404, f"unknown model version {version_id!r}")
        busy = self.jobs.active()
        if busy:
            raise HTTPException(
                409,
                f"job {busy[0].id} ({busy[0].kind.value}) is {busy[0].state.value}: "
                f"activate a model version after it ends or cancel it",
            )
        self.session.activate(version_id)
        return next(v for v in self.versions() if v.id == version_id)

    def metrics(self) -> list[schemas.RoundMetrics]:
        rows = []
        for data in self.store.rounds():
            metrics = schemas.finite_tree(data.get("metrics") or {})
            rows.append(
                schemas.RoundMetrics(
                    round=data["round"],
                    model_version=data["model_version"],
                    parent=data.get("parent"),
                    # every mask the round had, the one held out to validate on included
                    n_labelled=len(data["labelled"]) if data.get("labelled") else metrics.get("n_labelled"),
                    n_pseudo_labelled=metrics.get("n_pseudo_labelled"),
                    val_dice=metrics.get("val_dice"),
                    seconds=metrics.get("seconds"),
                    steps=metrics.get("steps"),
                )
            )
        return rows

    # -- jobs --------------------------------------------------------------------------------------------
    def start_finetune(self, options: dict) -> schemas.Job:
        if not self.store.labelled_ids():
            raise HTTPException(
                409, f"{self.store.root}: no labelled case yet: submit a mask before fine-tuning"
            )
        return schemas.Job.of(self.jobs.submit_finetune(options))
