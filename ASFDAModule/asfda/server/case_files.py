"""The files a client downloads for a case: its volume as NIfTI and a model's label map of it, in the
format asked for (served from what a scoring pass kept when there is one, so the annotator does not wait)."""

from __future__ import annotations

import threading
from enum import Enum
from pathlib import Path

from fastapi import HTTPException

from ..io.volumes import read_volume, volume_suffix
from ..proposals import ProposalKind, describe
from ..session.predictions import segmentation_path
from ..session.session import AdaptationSession
from ..session.starting_points import StartingPoint
from ..session.store import SessionStore
from . import schemas
from .jobs import JobManager
from .paths import PathGuard


class PredictionFormat(str, Enum):
    NIFTI = "nii.gz"
    SEG_NRRD = "seg.nrrd"


def starting_from(point: StartingPoint | None, proposed: bool, labelled: int) -> schemas.StartingFrom:
    """The source of a served segmentation: the proposal when ``proposed``, else the model's prediction
    (for want of a choice, by the choice, or while the chosen proposal of the case is being built)."""
    if point is None:
        why = "no labelled case yet" if not labelled else "no choice made yet"
        return schemas.StartingFrom(
            source=ProposalKind.MODEL.value,
            summary=f"starting from: the model's prediction ({why})",
            served=ProposalKind.MODEL.value,
            validated=False,
            labelled_cases=labelled,
        )
    choice = point.choice
    summary = choice.summary()
    if point.proposes and not proposed:
        building = describe(choice.served, choice.labelled_cases)
        summary = f"starting from: the model's prediction (the proposal, {building}, is being built)"
    return schemas.StartingFrom(
        source=choice.served.value if proposed else ProposalKind.MODEL.value,
        summary=summary,
        served=choice.served.value,
        validated=choice.validated,
        labelled_cases=choice.labelled_cases,
        dice=schemas.finite_tree({kind.value: value for kind, value in choice.dice.items()}),
        model_version=point.model_version,
        model_versions=dict(point.model_versions),
        made=point.made,
    )


class CaseFiles:
    """The case downloads of a :class:`~asfda.server.backend.Backend` (a mixin of it)."""

    session: AdaptationSession
    store: SessionStore
    guard: PathGuard
    jobs: JobManager
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

    def prediction_file(
        self, case_id: str, file_format: PredictionFormat
    ) -> tuple[Path, str, str, schemas.StartingFrom]:
        """The starting segmentation of a case on the case's grid, the model version behind it and its
        source: the chosen proposal when the choice serves one and it is built, else the model's label map
        (the one the scoring of the pool kept, at once, also while a round or a rescoring runs, else the
        active model's, computed once per version). A proposal not built yet is asked for in a job."""
        record = self.store.case(case_id)
        point = self.session.starting_point()
        proposal = self.session.proposed_prediction(case_id, point)
        if proposal is not None:
            version, path, name = point.model_version, proposal, f"proposal_{point.choice.served.value}"
        else:
            if point is not None and point.proposes and case_id not in point.cases:
                self.jobs.ensure_proposal((case_id,))
            saved = self.session.saved_prediction(case_id)
            if saved is None:
                with self.model_lock:
                    version = self.store.active_version
                    self.guard.in_session(self.store.predicted_label_path(case_id, version))  # before writing
                    saved = version, self.session.write_prediction(case_id)
            (version, path), name = saved, "prediction"
        path = self.guard.in_session(path)
        if file_format is PredictionFormat.SEG_NRRD:
            self.guard.in_session(segmentation_path(path))  # before it is written
            path = self.guard.in_session(self.session.segmentation_file(path))
        source = starting_from(point, proposal is not None, len(self.store.labelled_ids()))
        return path, f"{record.name}_{name}_{version}.{file_format.value}", version, source

    def starting_point(self) -> schemas.StartingFrom:
        """The current choice of what the next cases start from."""
        point = self.session.starting_point()
        return starting_from(point, point is not None and point.proposes, len(self.store.labelled_ids()))
