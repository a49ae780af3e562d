"""The table of cases the radiologist picks from, as a pure-Python model (the widget only draws it).

Unscored cells sort last whichever way the column is sorted: a case without a score is not "the least
uncertain", it is unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .BackendTypes import Case, CaseStatus, Ranking

NOT_SCORED = "–"


def _score(value: float | None) -> str:
    return NOT_SCORED if value is None else f"{value:.3f}"


class CaseColumn(Enum):
    """Columns in display order: (title, text of a cell, sort key of a cell)."""

    NAME = ("Case", lambda c: c.name, lambda c: c.name.lower())
    STATUS = ("Status", lambda c: c.status.label, lambda c: c.status.value)
    DKD = ("DKD", lambda c: _score(c.dkd), lambda c: c.dkd)
    ASD = ("ASD", lambda c: _score(c.asd), lambda c: c.asd)
    SCORE = ("Score", lambda c: _score(c.score), lambda c: c.score)
    RANK = ("Rank", lambda c: NOT_SCORED if c.rank is None else str(c.rank), lambda c: c.rank)
    MODEL_VERSION = ("Model version", lambda c: c.modelVersion or NOT_SCORED, lambda c: c.modelVersion)

    @property
    def title(self) -> str:
        return self.value[0]

    @property
    def text(self) -> Callable[[Case], str]:
        return self.value[1]

    @property
    def sortKey(self) -> Callable[[Case], object]:
        return self.value[2]


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

    def rows(self) -> list[CaseRow]:
        return [self._row(case) for case in self.sortedCases()]

    def rowIndexOfCase(self, caseId: str) -> int | None:
        return next((index for index, case in enumerate(self.sortedCases()) if case.id == caseId), None)

    def suggestedCase(self) -> Case | None:
        return next((case for case in self.cases if self._isSuggested(case)), None)

    def case(self, caseId: str) -> Case | None:
        return next((case for case in self.cases if case.id == caseId), None)

    def statusSummary(self) -> str:
        counts = Counter(case.status for case in self.cases)
        parts = [f"{counts[status]} {status.label}" for status in CaseStatus if counts[status]]
        return ", ".join(parts) or "no cases"

    def _isSuggested(self, case: Case) -> bool:
        if self.nextCaseId is not None:
            return case.id == self.nextCaseId
        return case.status is CaseStatus.SUGGESTED

    def _row(self, case: Case) -> CaseRow:
        stale = case.scored and self.modelVersion is not None and case.modelVersion != self.modelVersion
        return CaseRow(
            case.id,
            tuple(column.text(case) for column in self.columns),
            case.status,
            self._isSuggested(case),
            stale,
        )
