"""The Widget's wiring that can be checked without Qt: observers, the quit connection, translations.

slicer-core has no Qt, so the Widget is never built here (``setup`` loads a .ui file). These tests create the
Widget object, give it recording doubles for the few Qt objects a method touches, and call the real methods:
the parameter node and its ModifiedEvent are real MRML and VTK.
"""

from __future__ import annotations

import ast
from types import SimpleNamespace

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
    tree = ast.parse((MODULE_DIR / "ASFDAModule.py").read_text())
    shown = ("warningDisplay", "errorDisplay", "confirmOkCancelDisplay", "tryWithErrorDisplay", "_setStatus")
    bare = [
        ast.unparse(call)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and getattr(call.func, "attr", getattr(call.func, "id", None)) in shown
        and call.args
        and hasWords(call.args[0])
    ]
    assert bare == []
