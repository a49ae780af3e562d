"""The Logic's workflow steps added for the radiologist, on real MRML (slicer-core) and the fake backend.

Each test names the defect or feature of issue 12 it covers. The fake backend (``module_fake_backend.py``)
implements the HTTP contract; ``test_ModuleFlowRealBackend.py`` runs the flow on the engine's own backend.
"""

from __future__ import annotations

import time

import module_volumes as volumes
import numpy as np
import pytest
import SimpleITK as sitk
from module_fake_backend import TOKEN, useLocalBackend


def addCases(mrml, logic, count):
    nodes = [
        volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray() + 10 * n, f"patient {n}")
        for n in range(count)
    ]
    added = logic.submitVolumeFiles(logic.exportSceneVolumes(nodes))
    logic.tagSceneVolumes(added)
    return [outcome.case for outcome in added]


def test_after_a_round_the_next_prediction_carries_the_new_model_version(mrml, logic, fakeBackend):
    """Defect: backend info was fetched once, so after a round predictions were saved as the old version."""
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 2)
    logic.fetchInfo()
    first = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    volumes.paintSegment(mrml, first)
    result = logic.saveCase(first.case.id, first.segmentationNode, first.volumeNode, train=True, steps=2)
    assert logic.waitForJob(result.job.id, timeout=20, interval=0.05).modelVersion == "v1"

    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
    second = logic.loadCase(caseFiles)

    assert second.case.id != first.case.id
    assert caseFiles.modelVersion == "v1" and caseFiles.predictionPath.name == "prediction-v1.nrrd"
    assert second.segmentationNode.GetAttribute("ASFDA.ModelVersion") == "v1"
    assert first.segmentationNode.GetAttribute("ASFDA.ModelVersion") == "v0"


def test_ranking_answers_at_once_and_the_table_fills_in_as_scores_arrive(mrml, logic, fakeBackend):
    """Defect: GET /ranking waited for the whole pool to be scored, with no progress."""
    useLocalBackend(logic, fakeBackend)
    fakeBackend.state.scoringSeconds = 1.2
    cases = addCases(mrml, logic, 4)

    started = time.monotonic()
    first = logic.requestRanking()
    answeredIn = time.monotonic() - started
    progress = []
    ranking = logic.waitForRanking(
        timeout=20, interval=0.1, onProgress=lambda r: progress.append((r.job.progress, r.scoredCount))
    )

    assert answeredIn < 0.5 and not first.complete and first.job.kind.value == "score"
    assert first.nextCaseId is None
    assert any(0 < scored < len(cases) for _, scored in progress), progress  # partly scored tables shown
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)
    assert ranking.complete and ranking.scoredCount == len(cases)
    assert logic.caseTable.suggestedCase() is not None and all(c.rank for c in logic.caseTable.cases)


def test_the_scoring_job_can_be_cancelled(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    fakeBackend.state.scoringSeconds = 4.0
    addCases(mrml, logic, 4)

    job = logic.requestRanking().job
    cancelled = logic.cancelJob(job.id)
    time.sleep(1.5)

    assert cancelled.state.value == "cancelled"
    assert logic.fetchJob(job.id).state.value == "cancelled"
    assert fakeBackend.state.scoredCount.get("v0", 0) <= 1  # it stopped scoring


def test_save_without_training_batches_masks_then_one_round_takes_them(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 3)
    saved = []
    for _ in range(2):
        annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
        volumes.paintSegment(mrml, annotation)
        saved.append(
            logic.saveCase(
                annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=False
            )
        )
    job = logic.waitForJob(logic.startRound(steps=2).id, timeout=20, interval=0.05)

    assert [r.job for r in saved] == [None, None] and all(
        "train when you are ready" in r.message for r in saved
    )
    assert [request for request in fakeBackend.state.requests if request[1] == "/finetune"] == [
        ("POST", "/finetune", f"Bearer {TOKEN}")
    ]
    assert job.state.value == "done" and fakeBackend.state.metrics[-1]["n_labelled"] == 2


def test_edit_effort_is_the_dice_between_prediction_and_saved_mask(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
    annotation = logic.loadCase(caseFiles)
    volumes.paintSegment(mrml, annotation)  # adds a spleen the prediction did not have

    result = logic.saveCase(
        annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=False
    )
    chart = logic.updateEditEffortPlot()

    # Independently, with SimpleITK on the two files: mean Dice over the labels in either map.
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(caseFiles.predictionPath)))
    label = sitk.GetArrayFromImage(
        sitk.ReadImage(str(logic.cacheDir / "cases" / annotation.case.id / "label.nii.gz"))
    )
    dices = [
        2 * np.sum((prediction == v) & (label == v)) / (np.sum(prediction == v) + np.sum(label == v))
        for v in sorted((set(np.unique(prediction)) | set(np.unique(label))) - {0})
    ]
    assert result.effort.dice == pytest.approx(np.mean(dices)) and 0 < result.effort.dice < 1
    assert result.effort.round == 0 and result.effort.modelVersion == "v0"
    assert [r.caseId for r in logic.effort.records()] == [annotation.case.id]
    assert (fakeBackend.state.session / "slicer" / "edit_effort.json").is_file()  # kept with the session
    table = chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
    assert table.GetNumberOfRows() == 1 and table.GetValueByName(0, "edit Dice").ToDouble() == pytest.approx(
        result.effort.dice
    )


def test_a_mask_is_saved_even_when_its_edit_effort_cannot_be_measured(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 1)
    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
    annotation = logic.loadCase(caseFiles)
    image = sitk.Image(3, 3, 3, sitk.sitkUInt8)  # a prediction file that does not compare
    sitk.WriteImage(image, str(caseFiles.predictionPath))

    result = logic.saveCase(
        annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=False
    )

    assert result.effort is None and result.case.status.value == "labelled"


def test_skip_and_flag_are_kept_in_the_session_and_next_serves_other_cases(
    moduleFile, mrml, logic, fakeBackend, tmp_path
):
    useLocalBackend(logic, fakeBackend)
    cases = addCases(mrml, logic, 3)
    first = logic.fetchCaseFiles("tester", logic.caseIdsInScene()).case
    logic.skipCase(first.id)
    second = logic.fetchCaseFiles("tester", logic.caseIdsInScene()).case
    logic.flagCase(second.id, "motion artefact")
    third = logic.fetchCaseFiles("tester", logic.caseIdsInScene()).case
    # A new Logic on the same session (Slicer restarted) knows the marks.
    again = moduleFile.ASFDAModuleLogic(scene=mrml.scene, cacheDir=tmp_path / "cache2")
    useLocalBackend(again, fakeBackend)
    marks = {r.caseId: (r.mark.value, r.note) for r in again.marks.records()}

    assert len({first.id, second.id, third.id}) == 3 and third.id == cases[2].id
    assert marks == {first.id: ("skipped", ""), second.id: ("flagged", "motion artefact")}
    # Only marked cases left: the skipped one comes back, the flagged one does not.
    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene(), third.id))
    volumes.paintSegment(mrml, annotation)
    logic.saveCase(third.id, annotation.segmentationNode, annotation.volumeNode, train=False)
    for case in fakeBackend.state.cases.values():
        case.last_served = None  # the leases ran out
    assert logic.fetchCaseFiles("tester", logic.caseIdsInScene()).case.id == first.id


def test_the_previous_case_is_hidden_or_closed_when_the_next_opens(mrml, logic, fakeBackend):
    from ASFDAModuleLib.Settings import LeavePolicy

    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 3)
    first = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    composite = mrml.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    composite.SetBackgroundVolumeID(first.volumeNode.GetID())

    second = logic.loadCase(
        logic.fetchCaseFiles("tester", logic.caseIdsInScene()), first.case.id, LeavePolicy.HIDE
    )
    assert not first.segmentationNode.GetDisplayNode().GetVisibility()
    assert (
        composite.GetBackgroundVolumeID() is None and second.segmentationNode.GetDisplayNode().GetVisibility()
    )

    secondId = second.case.id
    third = logic.loadCase(
        logic.fetchCaseFiles("tester", logic.caseIdsInScene()), secondId, LeavePolicy.CLOSE
    )
    assert logic.sceneLogic.caseNodes(secondId) == [] and third.case.id not in (first.case.id, secondId)
    assert len(logic.sceneLogic.caseNodes(first.case.id)) == 2  # hidden, not closed


def test_model_versions_with_metrics_and_activate_to_roll_back(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 2)
    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    volumes.paintSegment(mrml, annotation)
    result = logic.saveCase(
        annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=True
    )
    logic.waitForJob(result.job.id, timeout=20, interval=0.05)

    versions = logic.fetchModelVersions()
    info = logic.activateModelVersion("v0")
    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())

    assert [(v.id, v.active) for v in versions] == [("v0", False), ("v1", True)]
    assert versions[1].metrics["val_dice"] == pytest.approx(0.7)
    assert info.modelVersion == "v0" and caseFiles.modelVersion == "v0"


def test_activating_a_version_cancels_the_scoring_of_the_one_left_but_never_a_round(mrml, logic, fakeBackend):
    from ASFDAModuleLib.BackendClient import BackendError

    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 2)
    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    volumes.paintSegment(mrml, annotation)
    result = logic.saveCase(
        annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=True
    )
    logic.waitForJob(result.job.id, timeout=20, interval=0.05)
    fakeBackend.state.scoringSeconds = 5.0
    scoring = logic.requestRanking().job  # v1 is being scored

    info = logic.activateModelVersion("v0")

    assert info.modelVersion == "v0" and logic.fetchJob(scoring.id).state.value == "cancelled"
    fakeBackend.state.scoringSeconds = 0.0
    fakeBackend.state.jobSeconds = 3.0
    round_ = logic.startRound()
    with pytest.raises(BackendError, match="is running"):
        logic.activateModelVersion("v1")
    assert logic.fetchJob(round_.id).state.value in ("queued", "running")
    logic.cancelJob(round_.id)


def test_remove_case_and_a_clear_error_from_a_backend_without_the_route(mrml, logic, fakeBackend):
    from ASFDAModuleLib.BackendClient import BackendError

    useLocalBackend(logic, fakeBackend)
    cases = addCases(mrml, logic, 3)
    logic.skipCase(cases[0].id)

    removed = logic.removeCase(cases[0].id)
    assert removed.id == cases[0].id and cases[0].id not in fakeBackend.state.cases
    assert logic.marks.get(cases[0].id) is None
    assert [
        request[0] for request in fakeBackend.state.requests if request[1].startswith("/cases/case-1")
    ] == ["DELETE"]

    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene(), cases[1].id))
    volumes.paintSegment(mrml, annotation)
    logic.saveCase(cases[1].id, annotation.segmentationNode, annotation.volumeNode, train=False)
    with pytest.raises(BackendError, match="is labelled") as labelled:
        logic.removeCase(cases[1].id)
    assert labelled.value.status == 409

    fakeBackend.state.removeRoute = False
    with pytest.raises(BackendError, match="this backend cannot remove cases"):
        logic.removeCase(cases[2].id)


def test_progress_counts_labelled_cases_of_the_table(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    addCases(mrml, logic, 3)
    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    volumes.paintSegment(mrml, annotation)
    logic.saveCase(annotation.case.id, annotation.segmentationNode, annotation.volumeNode, train=False)
    logic.applyRanking(logic.fetchRanking())
    assert logic.progress() == (1, 3)


def test_a_model_path_is_checked_before_any_process_starts(logic, tmp_path):
    notAModel = tmp_path / "weights.onnx"
    notAModel.write_text("x")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        logic.startBackend(tmp_path / "session", notAModel)
    with pytest.raises(ValueError, match="no such file or folder"):
        logic.startBackend(tmp_path / "session", tmp_path / "missing")
    with pytest.raises(ValueError, match="choose a session folder"):
        logic.startBackend(".", None)  # an unset path field, as Slicer printed it before
    assert logic.backendProcess is None
