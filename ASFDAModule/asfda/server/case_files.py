"""The files a client downloads for a case: its volume as NIfTI and a model's label map of it, in the
format asked for (served from what a scoring pass kept when there is one, so the annotator does not wait)."""

from __future__ import annotations

import threading
from enum import Enum
from pathlib import Path

from fastapi import HTTPException

from ..io.volumes import read_volume, volume_suffix
from ..session.predictions import segmentation_path
from ..session.session import AdaptationSession
from ..session.store import SessionStore
from .paths import PathGuard


class PredictionFormat(str, Enum):
    NIFTI = "nii.gz"
    SEG_NRRD = "seg.nrrd"


class CaseFiles:
    """The case downloads of a :class:`~asfda.server.backend.Backend` (a mixin of it)."""

    session: AdaptationSession
    store: SessionStore
    guard: PathGuard
    model_lock: threading.Lock

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
            self.guard.in_session(segmentation_path(path))  # before it is written
            path = self.guard.in_session(self.session.segmentation_file(path))
        return path, f"{record.name}_prediction_{version}.{file_format.value}", version
