"""Cases the radiologist skipped or flagged, kept with the session so that they survive a restart.

The backend does not know about them: the module keeps them in a small JSON file (``case_marks.json``) in its
own folder of the session, and asks the backend for another case while the one it serves is marked.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from .i18n import _
from .Paths import replaceJson

FILE_NAME = "case_marks.json"
HTTP_NOT_FOUND = 404


class CaseMark(str, Enum):
    SKIPPED = "skipped"  # not now: served again only when nothing else is left
    FLAGGED = "flagged"  # needs a second look (artefact, wrong anatomy): never served again by "next"

    @property
    def label(self) -> str:
        """The mark in the user's language (the case table's status)."""
        return _("skipped") if self is CaseMark.SKIPPED else _("flagged")


@dataclass
class MarkRecord:
    caseId: str
    mark: CaseMark
    note: str = ""
    time: float = 0.0


class CaseMarks:
    """The marks of one session, read from and written to ``folder/case_marks.json`` at once."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / FILE_NAME
        self._records: dict[str, MarkRecord] = self._read()

    def mark(self, caseId: str, mark: CaseMark, note: str = "") -> MarkRecord:
        record = MarkRecord(caseId, CaseMark(mark), note, time.time())
        self._records[caseId] = record
        self._write()
        return record

    def unmark(self, caseId: str) -> None:
        if self._records.pop(caseId, None) is not None:
            self._write()

    def get(self, caseId: str) -> MarkRecord | None:
        return self._records.get(caseId)

    def ids(self, mark: CaseMark | None = None) -> set[str]:
        return {r.caseId for r in self._records.values() if mark is None or r.mark is mark}

    def records(self) -> list[MarkRecord]:
        return sorted(self._records.values(), key=lambda r: r.time)

    def labels(self) -> dict[str, str]:
        """Case id -> the mark as the case table shows it."""
        return {r.caseId: r.mark.label for r in self._records.values()}

    def _read(self) -> dict[str, MarkRecord]:
        if not self.path.is_file():
            return {}
        try:
            items = json.loads(self.path.read_text())
            records = [
                MarkRecord(i["caseId"], CaseMark(i["mark"]), i.get("note", ""), i.get("time", 0.0))
                for i in items
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                _("{file}: not a list of case marks ({error}); fix or delete the file").format(
                    file=self.path, error=error
                )
            ) from None
        return {r.caseId: r for r in records}

    def _write(self) -> None:
        replaceJson(self.path, [{**asdict(r), "mark": r.mark.value} for r in self.records()])


def nextUnmarkedCase(client, marks: CaseMarks | None, annotator: str):
    """The backend's next case (``POST /next``), asking again while it serves a skipped or flagged case.

    Each answer leases its case to this annotator, so asking again moves down the ranking; a skipped case
    comes back once only marked cases are left, a flagged one never (it can still be opened from the table).
    """
    from .BackendClient import BackendError

    marked = marks.ids() if marks is not None else set()
    served = []
    for _attempt in range(len(marked) + 1):
        try:
            case = client.nextCase(annotator)
        except BackendError as error:
            if error.status == HTTP_NOT_FOUND and served:
                break
            raise
        if case.id not in marked:
            return case
        if any(c.id == case.id for c in served):
            break
        served.append(case)
    skipped = [c for c in served if marks.get(c.id).mark is CaseMark.SKIPPED]
    if skipped:
        return skipped[0]
    raise RuntimeError(_("every case left is flagged: open one from the table, or remove its flag"))
