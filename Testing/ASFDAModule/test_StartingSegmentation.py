"""Issue 23: the segmentation a case starts from is the backend's choice (the model's prediction or a few-shot
proposal), and the module shows where it comes from; on real MRML (slicer-core) and the fake backend."""

from __future__ import annotations

import module_volumes as volumes
import SimpleITK as sitk
from module_fake_backend import useLocalBackend
from test_ASFDAModuleWidget import (  # noqa: F401 - the fixture is used by name
    builtWidget,
    connectWithOneCase,
    recordStatus,
    settle,
)

SUMMARY = "starting from: propagation from 2 cases, validated Dice 0.71 against the model's 0.48"


def openCase(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    volumeNode = volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray())
    logic.tagSceneVolumes(logic.submitVolumeFiles(logic.exportSceneVolumes([volumeNode])))
    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
    return caseFiles, logic.loadCase(caseFiles)


def foregroundShare(logic, annotation) -> float:
    """The share of the volume the segment editor's segmentation covers, as the radiologist would save it."""
    labelFile = logic.exportCorrection(annotation.case.id, annotation.segmentationNode, annotation.volumeNode)
    return float((sitk.GetArrayFromImage(sitk.ReadImage(str(labelFile))) > 0).mean())


def test_a_served_proposal_is_the_segmentation_and_its_source_is_kept(mrml, logic, fakeBackend):
    fakeBackend.state.proposal = ("majority", SUMMARY)
    caseFiles, annotation = openCase(mrml, logic, fakeBackend)

    assert caseFiles.predictionSource == "majority" and caseFiles.startingFrom == SUMMARY
    assert logic.startingFrom(annotation.case.id) == SUMMARY
    assert annotation.segmentationNode.GetAttribute("ASFDA.StartingFrom") == SUMMARY
    served = sitk.GetArrayFromImage(sitk.ReadImage(str(caseFiles.predictionPath))) > 0
    assert abs(foregroundShare(logic, annotation) - served.mean()) < 0.01
    assert 0.45 < served.mean() < 0.55  # the proposal (half the volume), not the model's 20 %


def test_the_models_prediction_says_nothing_more_from_an_older_backend(mrml, logic, fakeBackend):
    caseFiles, annotation = openCase(mrml, logic, fakeBackend)

    assert caseFiles.predictionSource is None and caseFiles.startingFrom is None
    assert logic.startingFrom(annotation.case.id) is None
    assert not annotation.segmentationNode.GetAttribute("ASFDA.StartingFrom")
    assert 0.15 < foregroundShare(logic, annotation) < 0.25  # the model's brightest 20 %


def test_the_panel_says_what_the_case_starts_from(builtWidget, fakeBackend, mrml):  # noqa: F811
    widget, ui, shown = builtWidget
    widget.setup()
    said = recordStatus(widget)
    connectWithOneCase(widget, ui, fakeBackend, mrml)
    fakeBackend.state.proposal = ("majority", SUMMARY)
    widget.onAnnotateNext()
    settle(widget)
    opened = said[-1]
    widget.cleanup()

    assert shown == {"errors": [], "warnings": []}
    assert "p0" in opened and "Starting from: propagation from 2 cases, validated Dice 0.71" in opened
