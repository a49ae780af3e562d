"""How much the radiologist had to change the model's prediction: Dice between prediction and submitted mask.

A Dice near 1 means the prediction was accepted almost as it was; plotted per round, it shows when the model
has become good enough that corrections are small (MONAI Label issue 55 asks for this measure).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .i18n import _
from .Paths import replaceJson

FILE_NAME = "edit_effort.json"
OPENED_FILE_NAME = "opened_cases.json"


def editDice(prediction: np.ndarray, corrected: np.ndarray) -> float | None:
    """Mean Dice over the foreground labels present in either map; None when both are empty."""
    if prediction.shape != corrected.shape:
        raise ValueError(
            _("prediction {prediction} and mask {mask} differ in shape").format(
                prediction=prediction.shape, mask=corrected.shape
            )
        )
    labels = sorted((set(np.unique(prediction).tolist()) | set(np.unique(corrected).tolist())) - {0})
    if not labels:
        return None
    dices = []
    for label in labels:
        a, b = prediction == label, corrected == label
        dices.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return float(np.mean(dices))


def changedFraction(prediction: np.ndarray, corrected: np.ndarray) -> float:
    """The share of voxels whose label the radiologist changed."""
    return float(np.mean(prediction != corrected))


@dataclass
class EditRecord:
    caseId: str
    caseName: str
    modelVersion: str | None
    round: int | None
    dice: float | None
    changedFraction: float
    seconds: float | None = None  # from opening the case to saving its mask (a restart in between included)


@dataclass
class RoundEffort:
    round: int
    meanDice: float | None
    cases: int


class EditEffortLog:
    """One record per submitted mask, kept in ``folder/edit_effort.json``."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FILE_NAME
        self._records = self._read()

    def add(self, record: EditRecord) -> EditRecord:
        # A case saved again replaces its earlier record: the effort is that of its last correction.
        self._records = [r for r in self._records if r.caseId != record.caseId] + [record]
        self._write()
        return record

    def records(self) -> list[EditRecord]:
        return list(self._records)

    def perRound(self) -> list[RoundEffort]:
        byRound: dict[int, list[float]] = defaultdict(list)
        counts: dict[int, int] = defaultdict(int)
        for r in self._records:
            roundNumber = r.round or 0
            counts[roundNumber] += 1
            if r.dice is not None:
                byRound[roundNumber].append(r.dice)
        return [
            RoundEffort(n, float(np.mean(byRound[n])) if byRound[n] else None, counts[n])
            for n in sorted(counts)
        ]

    def _read(self) -> list[EditRecord]:
        if not self.path.is_file():
            return []
        try:
            return [EditRecord(**item) for item in json.loads(self.path.read_text())]
        except (ValueError, TypeError) as error:
            raise ValueError(
                _("{file}: not an edit-effort log ({error}); fix or delete the file").format(
                    file=self.path, error=error
                )
            ) from None

    def _write(self) -> None:
        replaceJson(self.path, [asdict(r) for r in self._records])


@dataclass
class OpenedCase:
    """What the edit effort of a case is measured against: the prediction it was opened with, and when."""

    caseId: str
    caseName: str
    predictionPath: str
    modelVersion: str | None
    round: int | None
    opened: float


class OpenedCases:
    """The cases opened for correction, kept in ``folder/opened_cases.json``: a mask saved after a restart of
    the module (or of Slicer) still gets its edit effort."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / OPENED_FILE_NAME
        self._records = self._read()

    def add(self, caseId, caseName, predictionPath, modelVersion, round) -> OpenedCase:
        record = OpenedCase(caseId, caseName, str(predictionPath), modelVersion, round, time.time())
        self._records[caseId] = record
        replaceJson(self.path, [asdict(r) for r in self._records.values()])
        return record

    def get(self, caseId: str) -> OpenedCase | None:
        return self._records.get(caseId)

    def forget(self, caseId: str) -> None:
        if self._records.pop(caseId, None) is not None:
            replaceJson(self.path, [asdict(r) for r in self._records.values()])

    def _read(self) -> dict[str, OpenedCase]:
        if not self.path.is_file():
            return {}
        try:
            records = [OpenedCase(**item) for item in json.loads(self.path.read_text())]
        except (ValueError, TypeError) as error:
            raise ValueError(
                _("{file}: not a list of opened cases ({error}); fix or delete the file").format(
                    file=self.path, error=error
                )
            ) from None
        return {r.caseId: r for r in records}
