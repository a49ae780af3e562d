"""The Widget's wiring that can be checked without Qt: observers, the quit connection, translations.

slicer-core has no Qt, so the Widget is never built here (``setup`` loads a .ui file). These tests create the
Widget object, give it recording doubles for the few Qt objects a method touches, and call the real methods:
the parameter node and its ModifiedEvent are real MRML and VTK.
"""

from __future__ import annotations

import ast
import sys
from types import SimpleNamespace

import module_volumes as volumes
import pytest
from module_paths import MODULE_DIR


class Button:
    enabled = None


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot):
        self.slots.remove(slot)  # ValueError, as Qt raises, when it was not connected


BUTTONS = [
    "startBackendButton",
    "stopBackendButton",
    "addSceneVolumesButton",
    "addFolderButton",
    "refreshButton",
    "annotateNextButton",
    "showPlotsButton",
    "trainButton",
    "removeCaseButton",
    "refreshModelsButton",
    "activateVersionButton",
    "saveAndNextButton",
    "saveWithoutTrainingButton",
    "skipButton",
    "flagButton",
    "cancelRoundButton",
    "cancelScoringButton",
    "updatePredictionButton",
]


@pytest.fixture
def widget(moduleFile, mrml, tmp_path):
    widget = moduleFile.ASFDAModuleWidget()
    widget.logic = moduleFile.ASFDAModuleLogic(scene=mrml.scene, cacheDir=tmp_path / "cache")
    widget.logic.client = object()  # "connected": the buttons that need a backend may be enabled
    widget.ui = SimpleNamespace(**{name: Button() for name in BUTTONS})
    return widget


def test_a_parameter_node_change_refreshes_the_buttons(widget):
    """Defect: the parameter node's ModifiedEvent was not observed, so buttons refreshed only by hand."""
    parameters = widget.logic.getParameterNode()
    widget.setParameterNode(parameters)
    assert widget.ui.saveAndNextButton.enabled is False  # no case open

    parameters.currentCaseId = "case-1"  # e.g. set by a script, or by the scene being loaded

    assert widget.ui.saveAndNextButton.enabled is True and widget.ui.flagButton.enabled is True
    widget.setParameterNode(None)
    parameters.currentCaseId = ""
    assert widget.ui.saveAndNextButton.enabled is True  # no longer observed


def test_cleanup_disconnects_about_to_quit(moduleFile, widget, monkeypatch):
    """Defect: aboutToQuit was connected in setup and never disconnected: one stale slot per reload."""
    app = SimpleNamespace(aboutToQuit=Signal())
    monkeypatch.setattr(moduleFile.slicer, "app", app, raising=False)
    timer = SimpleNamespace(stop=lambda: None)
    widget.pollTimer = widget.jobTimer = widget.scoringTimer = timer
    widget.tasks = SimpleNamespace(shutdown=lambda: None)

    widget._connectApplication()
    assert len(app.aboutToQuit.slots) == 1
    widget.cleanup()

    assert app.aboutToQuit.slots == []


def test_setup_connects_and_cleanup_disconnects_through_the_same_pair():
    """The pair above is the one setup and cleanup use (setup itself needs Qt)."""
    tree = ast.parse((MODULE_DIR / "ASFDAModule.py").read_text())
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ASFDAModuleWidget")
    methods = {n.name: ast.unparse(n) for n in widget.body if isinstance(n, ast.FunctionDef)}
    assert "self._connectApplication()" in methods["setup"] and "aboutToQuit" not in methods["setup"]
    assert "self._disconnectApplication()" in methods["cleanup"]
    assert "ModifiedEvent" in methods["setParameterNode"]


def test_user_facing_text_goes_through_translation_and_the_help_links_the_documentation(moduleFile):
    """Defect: no _() wrappers and no documentation link in the help text."""
    import slicer_doubles

    parent = SimpleNamespace()
    moduleFile.ASFDAModule(parent)

    assert parent.title == "ASFDA" and parent.categories == ["Segmentation"]
    assert {"ASFDA", "Segmentation"} <= set(slicer_doubles.TRANSLATED)
    assert any(
        text.startswith("Adapt a pretrained 3D segmentation model") for text in slicer_doubles.TRANSLATED
    )
    assert any(text.startswith("Method after Yang") for text in slicer_doubles.TRANSLATED)
    assert f'<a href="{moduleFile.DOCUMENTATION_URL}">' in parent.helpText
    assert moduleFile.DOCUMENTATION_URL.startswith("https://")


def hasWords(node) -> bool:
    """A literal with words in it (an f-string of translated parts only, f"{failure}\n{error}", has none)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and any(c.isalpha() for c in node.value)
    if isinstance(node, ast.JoinedStr):
        return any(hasWords(part) for part in node.values if isinstance(part, ast.Constant))
    return False


def test_every_message_box_and_status_text_of_the_widget_is_translated():
    """Static: string literals passed to Slicer's message boxes and to the status line are wrapped in _()."""
    widgetFiles = [MODULE_DIR / "ASFDAModule.py", *sorted((MODULE_DIR / "ASFDAModuleLib").glob("*.py"))]
    calls = [node for path in widgetFiles for node in ast.walk(ast.parse(path.read_text()))]
    shown = ("warningDisplay", "errorDisplay", "confirmOkCancelDisplay", "tryWithErrorDisplay", "_setStatus")
    bare = [
        ast.unparse(call)
        for call in calls
        if isinstance(call, ast.Call)
        and getattr(call.func, "attr", getattr(call.func, "id", None)) in shown
        and call.args
        and hasWords(call.args[0])
    ]
    assert bare == []


@pytest.fixture
def builtWidget(moduleFile, mrml, tmp_path, monkeypatch):
    """The Widget after its real ``setup``, on mocks for Qt and the .ui widgets (slicer-core has no Qt).

    Mocks accept any call, so this shows no drawing; it runs the Widget's own Python (its calls into the
    Logic, the views, the background tasks) against real MRML and the fake backend, which catches a wrong
    name, a wrong argument or a wrong order in the wiring.
    """
    import xml.etree.ElementTree as ElementTree
    from unittest import mock

    import ASFDAModuleLib.WidgetViews as views

    ui = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "ASFDAModule.ui")
    names = {w.get("name") for w in ui.iter("widget")}
    widgets = SimpleNamespace(**{name: mock.MagicMock(name=name) for name in names})
    widgets.casesTable.currentRow.return_value = 0
    shown = {"errors": [], "warnings": []}
    util = moduleFile.slicer.util
    qt = mock.MagicMock(name="qt")
    monkeypatch.setitem(sys.modules, "qt", qt)  # slicer.util imports it too (wait cursor)
    monkeypatch.setattr(moduleFile, "qt", qt)
    monkeypatch.setattr(views, "qt", qt)
    monkeypatch.setattr(moduleFile.slicer, "app", mock.MagicMock(name="app"), raising=False)
    monkeypatch.setattr(util, "loadUI", lambda path: mock.MagicMock(name="uiWidget"), raising=False)
    monkeypatch.setattr(util, "childWidgetVariables", lambda widget: widgets, raising=False)
    monkeypatch.setattr(util, "errorDisplay", lambda text, **kw: shown["errors"].append(text), raising=False)
    monkeypatch.setattr(
        util, "warningDisplay", lambda text, **kw: shown["warnings"].append(text), raising=False
    )
    monkeypatch.setattr(util, "setSliceViewerLayers", lambda **kw: None, raising=False)
    monkeypatch.setattr(util, "mainWindow", lambda: None, raising=False)
    monkeypatch.setattr(moduleFile.slicer.modules, "plots", mock.MagicMock(name="plots"), raising=False)

    class Settings:
        values = {"ASFDA/leavePolicy": "hide"}

        def value(self, key, default=None):
            return self.values.get(key, default)

        def setValue(self, key, value):
            self.values[key] = value

    import ASFDAModuleLib.Settings as settings

    original = settings.ModuleSettings.__init__
    monkeypatch.setattr(
        settings.ModuleSettings, "__init__", lambda self, store=None: original(self, Settings())
    )
    widget = moduleFile.ASFDAModuleWidget(mock.MagicMock(name="parent"))
    widget.layout = mock.MagicMock(name="layout")
    widget.resourcePath = lambda path: str(MODULE_DIR / "Resources" / path)
    Logic = moduleFile.ASFDAModuleLogic
    monkeypatch.setattr(moduleFile, "ASFDAModuleLogic", lambda: Logic(cacheDir=tmp_path / "cache"))
    yield widget, widgets, shown
    widget.removeObservers()
    if hasattr(widget, "tasks"):
        widget.tasks.shutdown()


def settle(widget, seconds=10.0):
    """Let the background tasks finish and hand their results over, as the poll timer does."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        widget.tasks.waitAll(timeout=0.2)
        widget.tasks.poll()
        if not widget.tasks.busy:
            return
    raise TimeoutError("background tasks still running")


def recordStatus(widget) -> list[str]:
    """Every status line the widget shows from now on, in order (the status label keeps only the last)."""
    said = []
    setStatus = widget._setStatus
    widget._setStatus = lambda text, *args, **kwargs: (said.append(text), setStatus(text, *args, **kwargs))
    return said


def connectWithOneCase(widget, ui, fakeBackend, mrml) -> None:
    """Connect to the fake backend and add one scene volume, p0, as the user would."""
    from module_fake_backend import TOKEN

    widget.logic.connect(fakeBackend.url, TOKEN)
    widget._fetchInfo()
    settle(widget)
    ui.sceneVolumesSelector.checkedNodes.return_value = [
        volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray(), "p0")
    ]
    widget.onAddSceneVolumes()
    settle(widget)


def test_the_widget_sets_up_refreshes_opens_saves_skips_trains_and_cleans_up(
    builtWidget, fakeBackend, mrml, caplog
):
    import logging
    import threading
    import time

    from module_fake_backend import TOKEN

    caplog.set_level(logging.WARNING)
    widget, ui, shown = builtWidget
    fakeBackend.state.roundGate = threading.Event()  # the round holds until the test lets it end
    widget.setup()
    widget.logic.connect(fakeBackend.url, TOKEN)
    widget._fetchInfo()
    settle(widget)  # info, then ranking and model versions
    ui.sceneVolumesSelector.checkedNodes.return_value = [
        volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray() + 5 * n, f"p{n}")
        for n in range(4)
    ]
    widget.onAddSceneVolumes()
    settle(widget)
    widget.onAnnotateNext()
    settle(widget)
    first = widget._parameterNode.currentCaseId
    widget.onSave(train=False)  # save without training: the next case opens at once
    settle(widget)
    second = widget._parameterNode.currentCaseId
    widget.onMarkCase(flag=True)
    settle(widget)
    third = widget._parameterNode.currentCaseId
    widget.onSave(train=True)  # save and next: the next case opens at once, the round runs behind
    settle(widget)
    fourth = widget._parameterNode.currentCaseId
    roundWhileFourthOpened = fakeBackend.state.jobs[widget._jobId].state
    offeredDuringRound = ui.updatePredictionButton.enabled
    fakeBackend.state.roundGate.set()
    deadline = time.monotonic() + 20
    while widget._jobId is not None and time.monotonic() < deadline:
        widget.onJobTimer()
        settle(widget)
        time.sleep(0.05)
    settle(widget)  # info of the new version: the ranking refreshes, the update is offered
    offeredAfterRound = ui.updatePredictionButton.enabled
    fourthBefore = widget.logic.openCaseFiles[fourth].modelVersion
    widget.onUpdatePrediction()  # untouched: no question asked
    settle(widget)
    updated = widget._parameterNode.currentSegmentation
    fourthNodes = widget.logic.sceneLogic.caseNodes(fourth)
    widget.onShowPlots()
    settle(widget)
    widget.cleanup()

    assert shown == {"errors": [], "warnings": []}
    assert [r.message for r in caplog.records if "ASFDA" in r.getMessage()] == []
    assert len({first, second, third, fourth}) == 4
    assert roundWhileFourthOpened in ("queued", "running") and fourthBefore == "v0"  # the round still ran
    assert offeredDuringRound is False and offeredAfterRound is True
    assert widget.logic.openCaseFiles[fourth].modelVersion == "v1"  # updated to the new model
    assert updated.GetAttribute("ASFDA.ModelVersion") == "v1"
    assert [n.IsA("vtkMRMLSegmentationNode") for n in fourthNodes].count(True) == 1  # replaced, not added
    assert ui.updatePredictionButton.enabled is False  # nothing newer left
    assert widget.logic.marks.get(second).mark.value == "flagged"
    assert [r.caseId for r in widget.logic.effort.records()] == [first, third]
    assert ui.saveAndNextButton.enabled is True  # a case is open


def test_the_widget_asks_before_a_newer_prediction_replaces_an_edit(
    builtWidget, moduleFile, fakeBackend, mrml, monkeypatch
):
    from ASFDAModuleLib.WorkflowTypes import AnnotationCase

    widget, ui, shown = builtWidget
    questions, answers = [], [False, True]

    def confirm(text, **kwargs):
        questions.append(text)
        return answers.pop(0)

    monkeypatch.setattr(moduleFile.slicer.util, "confirmOkCancelDisplay", confirm)
    widget.setup()
    connectWithOneCase(widget, ui, fakeBackend, mrml)
    widget.onAnnotateNext()
    settle(widget)
    p = widget._parameterNode
    caseId, opened, volume = p.currentCaseId, p.currentSegmentation, p.currentVolume
    widget.logic.waitForJob(widget.logic.startRound(steps=1).id, timeout=20, interval=0.05)
    widget._fetchInfo()  # as when the round's job ends
    settle(widget)
    offered = ui.updatePredictionButton.enabled
    painted = volumes.paintSegment(mrml, AnnotationCase(None, volume, opened))  # the radiologist's edit

    widget.onUpdatePrediction()  # declined: nothing is fetched, nothing changes
    settle(widget)
    keptAfterNo = widget.logic.sceneLogic.findCaseSegmentation(caseId)
    widget.onUpdatePrediction()  # accepted: replaced
    settle(widget)
    replaced = widget.logic.sceneLogic.findCaseSegmentation(caseId)
    labels = widget.logic.sceneLogic.labelmapArray(replaced, volume)
    widget.cleanup()

    assert shown == {"errors": [], "warnings": []}
    assert offered is True
    assert len(questions) == 2 and "Replace your edits" in questions[0]
    assert keptAfterNo is opened and opened.GetAttribute("ASFDA.ModelVersion") == "v0"
    assert replaced is not opened and replaced.GetAttribute("ASFDA.ModelVersion") == "v1"
    assert not (labels[painted > 0] == 2).any()


def test_a_provisional_ranking_and_a_case_served_from_it_say_so(builtWidget, fakeBackend, mrml):
    """During the pool's first scoring the status names how many cases the ranking stands on, and a case
    served from it says that it came from a provisional ranking."""
    from ASFDAModuleLib.BackendTypes import Ranking

    widget, ui, shown = builtWidget
    widget.setup()
    said = recordStatus(widget)
    job = {"id": "j0001", "kind": "score", "state": "running", "message": "scoring p3"}
    partial = {"model_version": "v0", "round": 0, "cases": [], "next": None, "complete": False, "job": job}
    widget._onRanking(Ranking.fromJson({**partial, "provisional": True, "scored": 8, "pool_size": 20}))
    provisional = said[-1]
    widget._onRanking(Ranking.fromJson(partial))  # an older backend, or after a round: no count
    scoring = said[-1]
    widget.scoringTimer.stop()
    connectWithOneCase(widget, ui, fakeBackend, mrml)
    fakeBackend.state.provisionalNext = True
    widget.onAnnotateNext()
    settle(widget)
    opened = said[-1]
    widget.cleanup()

    assert shown == {"errors": [], "warnings": []}
    assert "ranking: 8 of 20 cases scored, provisional" in provisional and "scoring p3" in provisional
    assert "provisional" not in scoring and "scoring p3" in scoring
    assert "from a provisional ranking" in opened and "p0" in opened
