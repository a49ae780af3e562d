"""Fixtures of the module's tests: real MRML from the ``slicer-core`` wheel, no Slicer application.

The scene, the application logic with its default colour nodes, and the Volumes and Segmentations logics are
the real C++ classes; they are set up in the order Slicer itself uses (logics get the scene before any
segmentation node exists). What ``slicer-core`` lacks - Qt, the module manager, the scripted-module base
classes - is replaced by the minimal doubles of ``slicer_doubles.py``, and only where a test needs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTING_DIR = Path(__file__).resolve().parent
if str(TESTING_DIR) not in sys.path:
    sys.path.insert(0, str(TESTING_DIR))

from module_paths import importSlicerCore  # noqa: E402 - needs the path above


@pytest.fixture
def mrml():
    """A fresh scene with Slicer's logics, installed as ``slicer.mrmlScene`` and ``slicer.modules``."""
    slicer = importSlicerCore()
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    colorLogic = appLogic.GetColorLogic()
    colorLogic.SetMRMLScene(scene)  # adds the default colour nodes
    appLogic.SetModuleLogic("Colors", colorLogic)
    volumesLogic = _moduleLogic(slicer.vtkSlicerVolumesLogic(), scene, appLogic, "Volumes")
    segmentationsLogic = _moduleLogic(
        slicer.vtkSlicerSegmentationsModuleLogic(), scene, appLogic, "Segmentations"
    )
    saved = {name: getattr(slicer, name, None) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = scene
    # Slicer's module manager is Qt; this namespace only hands out the real logics above.
    slicer.modules = SimpleNamespace(
        volumes=SimpleNamespace(logic=lambda: volumesLogic),
        segmentations=SimpleNamespace(logic=lambda: segmentationsLogic),
    )
    yield SimpleNamespace(
        slicer=slicer,
        scene=scene,
        appLogic=appLogic,
        volumesLogic=volumesLogic,
        segmentationsLogic=segmentationsLogic,
    )
    for name, value in saved.items():
        if value is None:
            delattr(slicer, name)
        else:
            setattr(slicer, name, value)
    scene.Clear(1)


def _moduleLogic(logic, scene, appLogic, name):
    logic.SetMRMLApplicationLogic(appLogic)
    logic.SetMRMLScene(scene)
    appLogic.SetModuleLogic(name, logic)
    return logic


@pytest.fixture
def moduleFile(mrml):
    """``ASFDAModule.py`` imported with doubles for the Qt-only parts that slicer-core does not have."""
    import slicer_doubles

    with slicer_doubles.installed():
        sys.modules.pop("ASFDAModule", None)
        import ASFDAModule

        yield ASFDAModule
        sys.modules.pop("ASFDAModule", None)


@pytest.fixture
def logic(moduleFile, mrml, tmp_path):
    """The module's Logic on the test scene, with its own cache folder."""
    return moduleFile.ASFDAModuleLogic(scene=mrml.scene, cacheDir=tmp_path / "cache")


@pytest.fixture
def fakeBackend(tmp_path):
    """An in-process stand-in of the HTTP contract on 127.0.0.1 (the real server is tested by its authors)."""
    from module_fake_backend import FakeBackend

    backend = FakeBackend(tmp_path / "fake-session")
    backend.start()
    yield backend
    backend.stop()
