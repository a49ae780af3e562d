"""A radiologist's session through the Widget's handlers where it used to break (issue 22, items 10 to 13).

The Widget runs its real ``setup`` on mocks for Qt (``builtWidget`` of ``test_ASFDAModuleWidget.py``), on real
MRML and the fake backend; the mocks record what the tables were given to draw.
"""

from __future__ import annotations

import logging
import time

import module_volumes as volumes
from module_fake_backend import TOKEN, useLocalBackend
from test_ASFDAModuleWidget import builtWidget  # noqa: F401 - the fixture, used by name

CASE_ID = "ASFDA.CaseId"


def settle(widget, seconds: float = 20.0) -> None:
    """Let the background tasks finish and hand their results over, as the poll timer does."""
    deadline = time.monotonic() + seconds
    while widget.tasks.busy:
        if time.monotonic() > deadline:
            raise TimeoutError("background tasks still running")
        time.sleep(0.02)
        widget.tasks.poll()


def drawnTexts(moduleFile) -> list[str]:
    """Every cell text given to a table so far (``qt.QTableWidgetItem(text)`` on the mock)."""
    return [call.args[0] for call in moduleFile.qt.QTableWidgetItem.call_args_list if call.args]


def startSession(widget, fakeBackend, mrml, count: int, local: bool = True):
    """Set up the Widget, connect it to the fake backend, add ``count`` scene volumes; returns the nodes."""
    widget.setup()
    if local:
        useLocalBackend(widget.logic, fakeBackend)
    else:
        widget.logic.connect(fakeBackend.url, TOKEN)
    widget._fetchInfo()
    settle(widget)
    nodes = [
        volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray() + 5 * n, f"p{n}")
        for n in range(count)
    ]
    widget.ui.sceneVolumesSelector.checkedNodes.return_value = nodes
    widget.onAddSceneVolumes()
    settle(widget)
    return nodes


def followRound(widget, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while widget._jobId is not None and time.monotonic() < deadline:
        widget.onJobTimer()
        settle(widget)
        time.sleep(0.05)
    settle(widget)


def test_a_round_the_guard_holds_back_says_which_version_stays_active_and_why(
    builtWidget,  # noqa: F811
    fakeBackend,
    mrml,
    moduleFile,
    caplog,
):
    """Defect: the status line said "Round done: model version v1." although v0 stayed active; the reason was
    only in the progress bar's text, and the versions list showed no reason at all."""
    caplog.set_level(logging.INFO)
    widget, ui, shown = builtWidget
    startSession(widget, fakeBackend, mrml, 2)
    widget.onAnnotateNext()
    settle(widget)
    widget.onSave(train=False)
    settle(widget)
    fakeBackend.state.guardHoldsBack = True

    widget.onTrain()
    settle(widget)
    followRound(widget)

    statuses = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ASFDA: ")]
    note = "Round 1 kept v0 active: held-out Dice 0.812 < parent's 0.820."
    kept = "Its version v1 is kept; activate it in Model versions to use it anyway."
    assert f"ASFDA: {note} {kept}" in statuses
    assert not any("Round done: model version v1" in text for text in statuses)
    assert ui.statusLabel.text.endswith(note)  # the status lines after the round still say it
    drawn = drawnTexts(moduleFile)
    assert "active: round 1 (v1) validated worse" in drawn
    assert "not activated: held-out Dice 0.812 < parent's 0.820" in drawn
    # v0 stays active, so the open case's prediction is current: no "Update prediction" to v1 (issue 21).
    assert (
        widget._parameterNode.currentCaseId
        and widget.logic.newerModelVersion(widget._parameterNode.currentCaseId) is None
    )
    assert ui.updatePredictionButton.enabled is False
    assert shown == {"errors": [], "warnings": []}


def test_adding_volumes_of_which_the_backend_refuses_one_reports_each_and_keeps_scene_and_table_in_step(
    builtWidget,  # noqa: F811
    fakeBackend,
    mrml,
    moduleFile,
):
    """Defect: one refused file failed the whole task: the good volumes joined the pool untagged, the table
    was not redrawn, the refused file stayed in session/imports/, and opening a good case loaded a copy."""
    widget, ui, shown = builtWidget
    fakeBackend.state.refusedNames = {"p1.nii.gz"}

    nodes = startSession(widget, fakeBackend, mrml, 3)

    [warning] = shown["warnings"]
    assert warning.startswith("Added 2 of 3 volumes to the pool.")
    assert "p1.nii.gz: refused: " in warning and "not a volume the model can read" in warning
    assert ui.statusLabel.text.startswith("Model version v0, round 0: 2 unlabelled")  # the table's refresh
    tags = [node.GetAttribute(CASE_ID) for node in nodes]
    assert tags[1] is None and sorted(tags[0::2]) == sorted(c.id for c in widget.logic.caseTable.cases)
    assert sorted(p.name for p in (fakeBackend.state.session / "imports").iterdir()) == [
        "p0.nii.gz",
        "p2.nii.gz",
    ]
    assert "p0" in drawnTexts(moduleFile) and "p2" in drawnTexts(moduleFile)  # the table was redrawn
    volumesBefore = mrml.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")

    widget._openCase(tags[2])
    settle(widget)

    assert widget._parameterNode.currentVolume is nodes[2]  # the scene's volume, not a second copy
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumesBefore
    assert shown["errors"] == []


def test_after_the_backend_dies_the_round_is_no_longer_followed_and_cancel_is_disabled(
    builtWidget,  # noqa: F811
    fakeBackend,
    mrml,
    caplog,
):
    """Defect: the job timer logged a warning every second until a new backend started, and Cancel stayed
    enabled for a round nobody could cancel."""
    widget, ui, shown = builtWidget
    fakeBackend.state.jobSeconds = 60.0  # a round that is still running when the backend dies
    startSession(widget, fakeBackend, mrml, 2, local=False)
    widget.onAnnotateNext()
    settle(widget)
    widget.onSave(train=False)
    settle(widget)
    widget.onTrain()
    settle(widget)
    assert widget._jobId is not None and ui.cancelRoundButton.enabled is True
    caplog.set_level(logging.WARNING)
    caplog.clear()

    fakeBackend.stop()
    for _second in range(3):  # the job timer fires every second
        widget.onJobTimer()
        settle(widget)

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("ASFDA: Lost track of the fine-tuning round (")
    assert widget._jobId is None and ui.cancelRoundButton.enabled is False
    assert ui.statusLabel.text.startswith("Lost track of the fine-tuning round")
    assert shown["errors"] == []


def test_skip_and_flag_redraw_the_table_and_a_served_then_skipped_case_is_no_longer_suggested(
    builtWidget,  # noqa: F811
    fakeBackend,
    mrml,
    moduleFile,
):
    """Defect: Skip and Flag did not redraw the table, and a case served then skipped kept the status
    "suggested" (the backend calls a served case so for a while) and its highlight."""
    widget, ui, shown = builtWidget
    startSession(widget, fakeBackend, mrml, 3)
    widget.onAnnotateNext()
    settle(widget)
    skipped = widget._parameterNode.currentCaseId
    widget.onRefresh()  # the table as the backend now has it: the served case is "suggested"
    settle(widget)
    assert widget.logic.caseTable.case(skipped).status.value == "suggested"
    moduleFile.qt.QTableWidgetItem.reset_mock()

    widget.onMarkCase(flag=False)  # Skip; the redraw comes before the next case is asked for

    drawn = drawnTexts(moduleFile)
    name = widget.logic.caseTable.case(skipped).name
    assert drawn and "skipped" in drawn[drawn.index(name) : drawn.index(name) + 7]
    assert "suggested" not in drawn
    assert ui.casesSummaryLabel.text == "2 unlabelled, 1 skipped"
    [row] = [r for r in widget.logic.caseTable.rows(widget.logic.marks.labels()) if r.caseId == skipped]
    assert not row.suggested  # no highlight
    settle(widget)
    flagged = widget._parameterNode.currentCaseId
    moduleFile.qt.QTableWidgetItem.reset_mock()

    widget.onMarkCase(flag=True)

    assert "flagged" in drawnTexts(moduleFile)
    settle(widget)
    assert flagged != skipped and shown == {"errors": [], "warnings": []}


def test_the_edit_effort_of_a_case_opened_before_a_module_restart_is_recorded(
    moduleFile, mrml, logic, fakeBackend, tmp_path
):
    """Defect: what a case was opened with lived only in the Logic's memory: after a restart of the module
    its mask was saved without an edit effort."""
    from test_ModuleWorkflow import addCases

    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    volumes.paintSegment(mrml, annotation)
    restarted = moduleFile.ASFDAModuleLogic(scene=mrml.scene, cacheDir=logic.cacheDir)  # a new Logic
    useLocalBackend(restarted, fakeBackend)

    result = restarted.saveCase(
        annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=False
    )

    assert result.effort is not None and 0 < result.effort.dice < 1
    assert result.effort.modelVersion == "v0" and result.effort.round == 0
    assert result.effort.seconds is not None and result.effort.seconds >= 0
    assert [r.caseId for r in restarted.effort.records()] == [annotation.case.id]
    assert (fakeBackend.state.session / "slicer" / "opened_cases.json").is_file()  # with the session


def test_removing_a_case_untags_its_scene_volume(builtWidget, fakeBackend, mrml, moduleFile, monkeypatch):  # noqa: F811
    """Defect: the removed case's volume stayed tagged with its id: "open" and "add" treated it as a case the
    backend no longer has."""
    widget, ui, shown = builtWidget
    monkeypatch.setattr(moduleFile.slicer.util, "confirmOkCancelDisplay", lambda text: True, raising=False)
    nodes = startSession(widget, fakeBackend, mrml, 2)
    removed = nodes[0].GetAttribute(CASE_ID)
    ui.casesTable.item.return_value.data.return_value = removed  # the row selected in the table

    widget.onRemoveCase()
    settle(widget)

    assert removed not in fakeBackend.state.cases
    assert nodes[0].GetAttribute(CASE_ID) is None and nodes[1].GetAttribute(CASE_ID) is not None
    assert removed not in widget.logic.caseIdsInScene() and len(widget.logic.caseTable.cases) == 1
    assert shown == {"errors": [], "warnings": []}


def test_the_strategy_tooltip_names_the_engines_real_default(builtWidget, monkeypatch):  # noqa: F811
    """Defect: the tooltip said "asfda by default", a literal in the .ui file; the default is the engine's
    ``QueryConfig().strategy`` (clasp), and the tooltip must follow it."""
    import asfda.config
    from module_paths import MODULE_DIR

    widget, ui, shown = builtWidget
    widget.setup()
    assert "(clasp by default;" in ui.strategyComboBox.toolTip
    assert asfda.config.QueryConfig().strategy.value == "clasp"

    class OtherDefault:
        strategy = asfda.config.QueryStrategy.CORESET

    monkeypatch.setattr(asfda.config, "QueryConfig", OtherDefault)
    assert "(coreset by default;" in widget.logic.queryStrategyToolTip()  # read, not written down
    ui = (MODULE_DIR / "Resources" / "UI" / "ASFDAModule.ui").read_text()
    assert "by default" not in ui


def test_every_error_the_modules_library_raises_goes_through_translation():
    """Static: a message with words given to an exception in ASFDAModuleLib is ``_("...")`` (with
    ``.format``), never a bare literal or f-string, so Slicer's translation tooling finds it."""
    import ast

    from module_paths import MODULE_DIR

    def hasWords(node) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and any(c.isalpha() for c in node.value)
        if isinstance(node, ast.JoinedStr):
            return any(hasWords(part) for part in node.values if isinstance(part, ast.Constant))
        if isinstance(node, ast.BinOp):
            return hasWords(node.left) or hasWords(node.right)
        return False

    bare = []
    for path in sorted((MODULE_DIR / "ASFDAModuleLib").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                arguments = [*node.exc.args, *(keyword.value for keyword in node.exc.keywords)]
                if any(hasWords(argument) for argument in arguments):
                    bare.append(f"{path.name}:{node.lineno}")
    assert bare == []


def test_the_case_table_and_the_install_question_go_through_translation(moduleFile, tmp_path):
    """Defect: the table's column titles and summary, and the install question, bypassed ``_()``."""
    import slicer_doubles
    from ASFDAModuleLib.CaseTable import CaseTableModel
    from ASFDAModuleLib.InstallLogic import InstallLogic

    titles = [column.title for column in CaseTableModel.columns]
    summary = CaseTableModel().statusSummary()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scipy>=1.10\n")
    installed = {"torch": "2.9.0", "numpy": "2.2.1", "SimpleITK": "2.5.0"}
    InstallLogic(requirements, lambda question: False, object(), installed.get).ensureDependencies()

    translated = set(slicer_doubles.TRANSLATED)
    assert set(titles) <= translated and {"Case", "Status", "Model version"} <= set(titles)
    assert summary == "no cases" and summary in translated
    assert any(text.startswith("ASFDA needs these Python packages in Slicer:") for text in translated)
    assert any(text.startswith("Kept as they are (pip may not change them)") for text in translated)


def test_after_the_backend_dies_the_scoring_is_no_longer_followed(
    builtWidget,  # noqa: F811
    fakeBackend,
    mrml,
    caplog,
):
    """The scoring timer asks for the ranking every second, as the job timer asked for the round."""
    widget, ui, shown = builtWidget
    fakeBackend.state.scoringSeconds = 60.0  # still scoring when the backend dies
    startSession(widget, fakeBackend, mrml, 2, local=False)
    assert widget._scoringJobId is not None and ui.cancelScoringButton.enabled is True
    caplog.set_level(logging.WARNING)
    caplog.clear()

    fakeBackend.stop()
    for _second in range(3):  # the scoring timer fires every second
        widget.onScoringTimer()
        settle(widget)

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("ASFDA: Lost track of the scoring (")
    assert widget._scoringJobId is None and ui.cancelScoringButton.enabled is False
    assert shown["errors"] == []
