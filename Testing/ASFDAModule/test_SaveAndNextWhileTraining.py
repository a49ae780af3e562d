"""Issue 21: after Save and next the next case is there while the round runs behind; a newer model's
prediction reaches the open case only when asked for, and never over the radiologist's edits unasked.

Real MRML (slicer-core) and the fake backend, whose round is held open by ``roundGate`` until the test ends
it, so "while the round runs" is a fact of the test, not a race.
"""

from __future__ import annotations

import threading

import module_volumes as volumes
import numpy as np
import pytest
from module_fake_backend import TOKEN, useLocalBackend


def addCases(mrml, logic, count):
    nodes = [
        volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray() + 10 * n, f"patient {n}")
        for n in range(count)
    ]
    logic.tagSceneVolumes(logic.addVolumeSnapshots(logic.snapshotSceneVolumes(nodes)))


def openNext(logic, previous=None):
    return logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()), previous)


def segmentationArray(logic, annotation):
    return logic.sceneLogic.labelmapArray(annotation.segmentationNode, annotation.volumeNode)


@pytest.fixture
def heldRound(fakeBackend):
    """Rounds hold half way until the event is set (set at the end, so no thread is left waiting)."""
    gate = threading.Event()
    fakeBackend.state.roundGate = gate
    yield gate
    gate.set()


def test_save_and_next_serves_the_next_case_while_the_round_runs(mrml, logic, fakeBackend, heldRound):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 3)
    first = openNext(logic)
    volumes.paintSegment(mrml, first)

    # As the Widget does it: a copy of the mask on the GUI thread, the rest on a worker.
    snapshot = logic.snapshotCorrection(first.case.id, first.segmentationNode, first.volumeNode)
    submitted = logic.submitSnapshot(first.case.id, snapshot, steps=2, train=True)
    nextFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
    second = logic.loadCase(nextFiles, first.case.id)
    roundWhenServed = logic.fetchJob(submitted.job.id).state

    heldRound.set()
    done = logic.waitForJob(submitted.job.id, timeout=20, interval=0.05)
    logic.fetchInfo()  # as the Widget does when the round ends

    assert submitted.case.status.value == "labelled" and snapshot.path.is_file()
    assert not roundWhenServed.finished, roundWhenServed  # the next case came while the round ran
    assert second.case.id != first.case.id and nextFiles.modelVersion == "v0"
    assert second.segmentationNode.GetAttribute("ASFDA.ModelVersion") == "v0"
    assert done.state.value == "done" and done.modelVersion == "v1"
    assert logic.newerModelVersion(second.case.id) == "v1"  # the panel offers the update
    assert not logic.segmentationEdited(second.case.id)  # one click is enough


def test_an_edit_is_never_overwritten_by_a_prediction_update(mrml, logic, fakeBackend, heldRound):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 3)
    first = openNext(logic)
    edited = openNext(logic)  # both opened from model v0; this one gets corrected
    untouched = logic.loadCase(
        logic.fetchCaseFiles("tester", logic.caseIdsInScene(), first.case.id)
    )  # the first case, again in focus
    job = logic.startRound(steps=2)
    painted = volumes.paintSegment(mrml, edited)  # the radiologist edits while the round runs
    heldRound.set()
    logic.waitForJob(job.id, timeout=20, interval=0.05)
    logic.fetchInfo()
    beforeUpdate = segmentationArray(logic, edited)

    refused = logic.updatePrediction(logic.fetchPrediction(edited.case.id))
    afterRefusal = segmentationArray(logic, edited)
    updatedFiles = logic.fetchPrediction(untouched.case.id)
    updated = logic.updatePrediction(updatedFiles)
    replaced = logic.updatePrediction(logic.fetchPrediction(edited.case.id), replaceEdits=True)

    assert logic.newerModelVersion(edited.case.id) is None  # asked and answered: nothing newer left
    assert refused is None
    assert np.array_equal(afterRefusal, beforeUpdate) and (afterRefusal[painted > 0] == 2).all()
    assert logic.sceneLogic.findCaseSegmentation(edited.case.id).GetID() != edited.segmentationNode.GetID()
    assert replaced.segmentationNode.GetAttribute("ASFDA.ModelVersion") == "v1"
    assert not (segmentationArray(logic, replaced)[painted > 0] == 2).any()  # replaced only when asked
    assert updated is not None and updated.segmentationNode.GetAttribute("ASFDA.ModelVersion") == "v1"
    expected = logic.sceneLogic.readLabelmapArray(updatedFiles.predictionPath)
    assert np.array_equal(segmentationArray(logic, updated), expected)
    assert logic.sceneLogic.caseNodes(untouched.case.id).count(updated.segmentationNode) == 1
    assert len(logic.sceneLogic.caseNodes(untouched.case.id)) == 2  # its volume and one segmentation


def test_the_refusal_is_decided_when_the_update_arrives(mrml, logic, fakeBackend):
    """An edit made while the newer prediction downloads still stops the update (the Widget then asks)."""
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    annotation = openNext(logic)
    logic.waitForJob(logic.startRound(steps=1).id, timeout=20, interval=0.05)
    logic.fetchInfo()
    newer = logic.fetchPrediction(annotation.case.id)  # asked for while untouched
    volumes.paintSegment(mrml, annotation)  # ... and edited before it arrived

    assert logic.updatePrediction(newer) is None
    assert logic.sceneLogic.findCaseSegmentation(annotation.case.id) is annotation.segmentationNode


def test_a_segmentation_this_session_did_not_make_counts_as_edited(mrml, logic, fakeBackend):
    """From a saved scene, the module cannot know whether it was edited: it asks rather than replace."""
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    annotation = openNext(logic)
    assert not logic.segmentationEdited(annotation.case.id)

    annotation.segmentationNode.SetAttribute("ASFDA.Edited", "a token of another Slicer session")

    assert logic.segmentationEdited(annotation.case.id)


def test_without_the_version_header_the_prediction_is_the_active_versions(mrml, logic, fakeBackend):
    """An older backend does not name the prediction's model version: the active one is assumed."""
    useLocalBackend(logic, fakeBackend)
    fakeBackend.state.versionHeader = False
    addCases(mrml, logic, 1)

    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())

    assert caseFiles.modelVersion == logic.info.modelVersion == "v0"
    assert caseFiles.predictionPath.name == "prediction-v0.nrrd"


def test_the_mask_is_on_disk_even_when_the_backend_is_gone(mrml, logic, fakeBackend, tmp_path):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    annotation = openNext(logic)
    mask = volumes.paintSegment(mrml, annotation)
    case, segmentation, volume = annotation.case, annotation.segmentationNode, annotation.volumeNode
    snapshot = logic.snapshotCorrection(case.id, segmentation, volume)
    logic.connect("http://127.0.0.1:9", TOKEN)  # nothing listens there

    from ASFDAModuleLib.BackendClient import BackendUnreachableError

    with pytest.raises(BackendUnreachableError):
        logic.submitSnapshot(annotation.case.id, snapshot, train=True)
    written = logic.sceneLogic.readLabelmapArray(snapshot.path)
    assert (written[mask > 0] == 2).all()


def test_after_an_update_the_edit_effort_is_measured_against_the_newer_prediction(
    moduleFile, mrml, logic, fakeBackend
):
    """The case's record of what it was opened with (kept for a restart) follows the update: the mask saved
    after a restart of the module is compared with model v1's prediction, not the replaced v0 one."""
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    annotation = openNext(logic)
    logic.waitForJob(logic.startRound(steps=1).id, timeout=20, interval=0.05)
    logic.fetchInfo()
    updated = logic.updatePrediction(logic.fetchPrediction(annotation.case.id))
    volumes.paintSegment(mrml, updated)
    restarted = moduleFile.ASFDAModuleLogic(scene=mrml.scene, cacheDir=logic.cacheDir)
    useLocalBackend(restarted, fakeBackend)

    snapshot = restarted.snapshotCorrection(updated.case.id, updated.segmentationNode, updated.volumeNode)
    result = restarted.submitSnapshot(updated.case.id, snapshot, train=False)

    assert result.effort is not None and result.effort.modelVersion == "v1" and result.effort.round == 1
    assert 0 < result.effort.dice < 1 and result.effort.seconds is not None
