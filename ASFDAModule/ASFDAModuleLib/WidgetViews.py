"""Drawing the module's Qt widgets from the Logic's plain records (cases, jobs, model versions).

Qt only exists in the Slicer application: this file is imported by the Widget, never by the Logic, and what it
draws is decided in Qt-free code (``CaseTable``, ``BackendTypes``) that the tests cover.
"""

from __future__ import annotations

import qt

from .BackendTypes import Job, ModelVersion
from .CaseMarks import CaseMarks
from .CaseTable import CaseTableModel
from .i18n import _
from .RoundOutcome import versionStates
from .Settings import LeavePolicy

SUGGESTED_BACKGROUND = (255, 236, 179)
STALE_FOREGROUND = (128, 128, 128)


def setUpTable(table, titles: list[str]) -> None:
    table.setColumnCount(len(titles))
    table.setHorizontalHeaderLabels(titles)
    table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
    table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
    table.setSelectionMode(qt.QAbstractItemView.SingleSelection)
    table.horizontalHeader().setStretchLastSection(True)


def showCases(table, model: CaseTableModel, marks: CaseMarks | None) -> None:
    """The case table: suggested case highlighted, stale scores greyed, skipped or flagged cases' status says
    so (the model decides: ``CaseTableModel.rows``)."""
    rows = model.rows(marks.labels() if marks is not None else None)
    table.setRowCount(len(rows))
    highlight = qt.QBrush(qt.QColor(*SUGGESTED_BACKGROUND))
    stale = qt.QBrush(qt.QColor(*STALE_FOREGROUND))
    for rowIndex, row in enumerate(rows):
        for columnIndex, text in enumerate(row.cells):
            item = qt.QTableWidgetItem(text)
            item.setData(qt.Qt.UserRole, row.caseId)
            if row.suggested:
                item.setBackground(highlight)
            if row.stale:
                item.setForeground(stale)
                item.setToolTip(_("Scored with an earlier model version; it is rescored after the round."))
            table.setItem(rowIndex, columnIndex, item)


def showModelVersions(table, versions: list[ModelVersion]) -> None:
    """One row a version; the last cell says which is active and why a newer one is not."""
    states = versionStates(versions)
    table.setRowCount(len(versions))
    for row, version in enumerate(versions):
        metrics = ", ".join(
            f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
            for name, value in version.metrics.items()
        )
        roundText = "" if version.round is None else str(version.round)
        for column, text in enumerate([version.id, roundText, metrics, states[version.id]]):
            item = qt.QTableWidgetItem(text)
            item.setData(qt.Qt.UserRole, version.id)
            table.setItem(row, column, item)


def selectedId(table):
    """The id kept in the first cell of the selected row, or None."""
    item = table.item(table.currentRow(), 0)
    return item.data(qt.Qt.UserRole) if item is not None else None


def showJob(bar, job: Job) -> None:
    bar.setValue(int(round(100 * job.progress)))
    bar.setFormat(f"{job.state.value}: {job.message or '%p%'}")


def showLabelledProgress(bar, labelled: int, total: int) -> None:
    bar.setMaximum(max(total, 1))
    bar.setValue(labelled)


def askLeavePolicy(parent) -> LeavePolicy:
    """Ask what happens to the previous case when the next one opens (the Widget remembers the answer)."""
    box = qt.QMessageBox(parent)
    box.setWindowTitle(_("ASFDA"))
    box.setText(_("When the next case opens, what happens to the previous one? (asked once)"))
    buttons = [
        (box.addButton(_("Hide it"), qt.QMessageBox.AcceptRole), LeavePolicy.HIDE),
        (box.addButton(_("Close it"), qt.QMessageBox.DestructiveRole), LeavePolicy.CLOSE),
        (box.addButton(_("Keep it shown"), qt.QMessageBox.RejectRole), LeavePolicy.KEEP),
    ]
    box.exec_()
    clicked = box.clickedButton()
    return next((policy for button, policy in buttons if button == clicked), LeavePolicy.HIDE)
