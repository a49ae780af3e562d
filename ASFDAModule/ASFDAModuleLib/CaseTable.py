"""The table of cases the radiologist picks from, as a pure-Python model (the widget only draws it).

Unscored cells sort last whichever way the column is sorted: a case without a score is not "the least
uncertain", it is unknown. A case the radiologist skipped or flagged shows that mark as its status: the
backend still calls a served case "suggested" for a while, but it is no longer the one to correct.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from .BackendTypes import Case, CaseStatus, Ranking
from .i18n import _

NOT_SCORED = "–"


def _score(value: float | None) -> str:
    return NOT_SCORED if value is None else f"{value:.3f}"


def statusLabel(status: CaseStatus) -> str:
    """A case status in the user's language."""
    return {
        CaseStatus.UNLABELLED: _("unlabelled"),
        CaseStatus.SUGGESTED: _("suggested"),
        CaseStatus.LABELLED: _("labelled"),
        CaseStatus.PSEUDO_LABELLED: _("pseudo-labelled"),
    }[status]


class CaseColumn(Enum):
    """Columns in display order: (name, text of a cell, sort key of a cell); ``title`` is what is shown."""

    NAME = ("name", lambda c: c.name, lambda c: c.name.lower())
    STATUS = ("status", lambda c: statusLabel(c.status), lambda c: c.status.value)
    DKD = ("dkd", lambda c: _score(c.dkd), lambda c: c.dkd)
    ASD = ("asd", lambda c: _score(c.asd), lambda c: c.asd)
    SCORE = ("score", lambda c: _score(c.score), lambda c: c.score)
    RANK = ("rank", lambda c: NOT_SCORED if c.rank is None else str(c.rank), lambda c: c.rank)
    MODEL_VERSION = ("model version", lambda c: c.modelVersion or NOT_SCORED, lambda c: c.modelVersion)

    @property
    def title(self) -> str:
        return _columnTitles()[self]

    @property
    def text(self) -> Callable[[Case], str]:
        return self.value[1]

    @property
    def sortKey(self) -> Callable[[Case], object]:
        return self.value[2]


def _columnTitles() -> dict[CaseColumn, str]:
    # Called when drawn, not at import: the translation is loaded with the application.
    return {
        CaseColumn.NAME: _("Case"),
        CaseColumn.STATUS: _("Status"),
        CaseColumn.DKD: _("DKD"),
        CaseColumn.ASD: _("ASD"),
        CaseColumn.SCORE: _("Score"),
        CaseColumn.RANK: _("Rank"),
        CaseColumn.MODEL_VERSION: _("Model version"),
    }


# Skipped or flagged: the mark replaces what the backend says of a case not yet labelled.
_MARKABLE = (CaseStatus.UNLABELLED, CaseStatus.SUGGESTED)


@dataclass(frozen=True)
class CaseRow:
    """One row as shown: its cells, and whether to highlight it."""

    caseId: str
    cells: tuple[str, ...]
    status: CaseStatus
    suggested: bool
    stale: bool  # scored with another model version than the current one


class CaseTableModel:
    """Cases from the backend, sorted by a column, with the suggested next case marked."""

    columns = tuple(CaseColumn)

    def __init__(self):
        self.cases: list[Case] = []
        self.nextCaseId: str | None = None
        self.modelVersion: str | None = None
        self.sortColumn = CaseColumn.RANK
        self.ascending = True

    def setRanking(self, ranking: Ranking) -> None:
        self.setCases(ranking.cases, ranking.nextCaseId, ranking.modelVersion)

    def setCases(
        self, cases: list[Case], nextCaseId: str | None = None, modelVersion: str | None = None
    ) -> None:
        self.cases = list(cases)
        self.nextCaseId = nextCaseId
        self.modelVersion = modelVersion

    def sortBy(self, column: CaseColumn, ascending: bool | None = None) -> None:
        """Sort by a column; without ``ascending``, clicking the sorted column again reverses it."""
        if ascending is None:
            ascending = not self.ascending if column is self.sortColumn else True
        self.sortColumn, self.ascending = column, ascending

    def sortedCases(self) -> list[Case]:
        key = self.sortColumn.sortKey
        known = [case for case in self.cases if key(case) is not None]
        unknown = [case for case in self.cases if key(case) is None]
        known.sort(key=lambda case: (key(case), case.name.lower()), reverse=not self.ascending)
        return known + sorted(unknown, key=lambda case: case.name.lower())

    def rows(self, marks: Mapping[str, str] | None = None) -> list[CaseRow]:
        """The rows in display order; ``marks`` (case id -> "skipped", "flagged") override the status."""
        return [self._row(case, marks or {}) for case in self.sortedCases()]

    def rowIndexOfCase(self, caseId: str) -> int | None:
        return next((index for index, case in enumerate(self.sortedCases()) if case.id == caseId), None)

    def suggestedCase(self) -> Case | None:
        return next((case for case in self.cases if self._isSuggested(case)), None)

    def case(self, caseId: str) -> Case | None:
        return next((case for case in self.cases if case.id == caseId), None)

    def statusSummary(self, marks: Mapping[str, str] | None = None) -> str:
        marks = marks or {}
        counts = Counter(self._statusText(case, marks) for case in self.cases)
        order = [statusLabel(s) for s in _MARKABLE] + sorted(set(marks.values()))
        order += [statusLabel(s) for s in CaseStatus if s not in _MARKABLE]
        parts = [f"{counts[text]} {text}" for text in dict.fromkeys(order) if counts[text]]
        return ", ".join(parts) or _("no cases")

    def _isSuggested(self, case: Case) -> bool:
        if self.nextCaseId is not None:
            return case.id == self.nextCaseId
        return case.status is CaseStatus.SUGGESTED

    def _statusText(self, case: Case, marks: Mapping[str, str]) -> str:
        if case.status in _MARKABLE and case.id in marks:
            return marks[case.id]
        return statusLabel(case.status)

    def _row(self, case: Case, marks: Mapping[str, str]) -> CaseRow:
        stale = case.scored and self.modelVersion is not None and case.modelVersion != self.modelVersion
        cells = [column.text(case) for column in self.columns]
        cells[self.columns.index(CaseColumn.STATUS)] = self._statusText(case, marks)
        marked = case.status in _MARKABLE and case.id in marks
        return CaseRow(case.id, tuple(cells), case.status, self._isSuggested(case) and not marked, stale)
