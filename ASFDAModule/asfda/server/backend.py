"""The backend's state behind the HTTP routes: one session, its path guard, its jobs, and the operations
the routes call (each raises the engine's errors or an ``HTTPException``; ``app.py`` maps them)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import BinaryIO

from fastapi import HTTPException

from .. import __version__
from ..errors import ASFDAError, MaskError, StoreError, VolumeReadError
from ..io.volumes import VOLUME_SUFFIXES, case_name, content_hash, read_volume, volume_suffix
from ..proposals import ProposalKind
from ..scoring.query import RankedCase
from ..session.records import CaseRecord
from ..session.session import AdaptationSession
from . import ranking as ranking_views
from . import schemas
from .case_files import CaseFiles, PredictionFormat
from .jobs import JobManager, stop_leftover_workers
from .model_versions import ModelVersions
from .paths import PathForbiddenError, PathGuard
from .serving import MAX_SCORING_PASSES, CaseServing
from .settings import ServerSettings
from .uploads import safe_file_name, save_upload, upload_case_name
from .worker import serve_jobs

log = logging.getLogger(__name__)

# the public names, those that moved to their own modules included (callers import them from here)
__all__ = [
    "MAX_SCORING_PASSES",
    "Backend",
    "PredictionFormat",
    "ServerSettings",
    "open_session",
    "problem_of",
]


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


class Backend(CaseFiles, CaseServing, ModelVersions):
    """The session behind the routes; its case downloads, ranking and serving, and model versions are its
    mixins' (:mod:`.case_files`, :mod:`.serving`, :mod:`.model_versions`)."""

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
        self._rechoose_starting_point()
        return self.case(case_id)

    def _rechoose_starting_point(self) -> None:
        """A new mask changes the evidence: with one labelled case a choice that serves the model (no
        leave-one-out, nothing to build) is recorded at once; a proposal to build, or from two cases on the
        leave-one-out, runs as a job. The job builds the next case's proposal only: it runs before the
        round the mask starts, and the cases after it are built with the round's model once it lands (a
        proposal is kept per model version, so building them now would be done twice)."""
        single_case = self.session.proposal_config.single_case
        if len(self.store.labelled_ids()) < 2 and single_case is ProposalKind.MODEL:
            self.session.choose_starting_point()
        else:
            self.jobs.ensure_proposal(tuple(self.session.cases_ahead(1)))

    def remove_case(self, case_id: str) -> schemas.Case:
        """Take a case out of the pool (a volume the model cannot use, or added by mistake)."""
        view = self.case(case_id)
        busy = self.jobs.blocking()
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

    # -- jobs --------------------------------------------------------------------------------------------
    def start_finetune(self, options: dict) -> schemas.Job:
        if not self.store.labelled_ids():
            raise HTTPException(
                409, f"{self.store.root}: no labelled case yet: submit a mask before fine-tuning"
            )
        return schemas.Job.of(self.jobs.submit_finetune(options))
