"""What the Logic's steps hand to each other (and to the Widget): plain records, no MRML or Qt in them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .BackendTypes import Case, Job
from .EditEffort import EditRecord


@dataclass
class VolumeExport:
    """A scene volume written to a file for the session."""

    nodeId: str
    path: Path


@dataclass
class VolumeOutcome:
    """What the backend did with one written volume: the case it became, or why it refused the file."""

    export: VolumeExport
    case: Case | None
    error: str | None = None

    @property
    def fileName(self) -> str:
        return self.export.path.name


@dataclass
class CaseFiles:
    """What the backend sent for a case: its volume (None when already in the scene) and the prediction."""

    case: Case
    imagePath: Path | None
    predictionPath: Path
    labels: dict
    modelVersion: str | None
    round: int | None = None
    window: tuple[float, float] | None = None  # the volume's display window, computed on the worker
    # what the segmentation starts from (a backend before issue 23 does not say): model or a proposal kind,
    # and the line the panel shows, e.g. "starting from: propagation from 2 cases, validated Dice 0.71 ..."
    predictionSource: str | None = None
    startingFrom: str | None = None


@dataclass
class AnnotationCase:
    case: Case
    volumeNode: object
    segmentationNode: object


@dataclass
class SubmitResult:
    case: Case
    job: Job | None
    message: str
    effort: EditRecord | None = None
    waitsForRound: bool = False  # a round was running: the mask goes into the next one
