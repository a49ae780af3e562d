"""The Logic's whole flow, in one test, on real MRML (slicer-core) and the engine's own backend process.

Start, add scene volumes, non-blocking ranking with progress, next case with the current model version, save
without training, save and train, the next case while the round runs, next case with the new version, activate
the older version, remove a case, choose another query strategy, stop. The model is a tiny MONAI UNet on the
CPU (``module_processes.writeTinyModel``), so that it takes about a minute on two cores.
"""

from __future__ import annotations

import sys
import time

import module_volumes as volumes
import pytest
from module_processes import needsRealBackend, waitGone, writeTinyModel


@needsRealBackend
@pytest.mark.slow
def test_the_whole_flow_with_the_real_backend(moduleFile, mrml, tmp_path):
    from ASFDAModuleLib.Settings import LeavePolicy

    logic = moduleFile.ASFDAModuleLogic(scene=mrml.scene, cacheDir=tmp_path / "cache")
    model = writeTinyModel(tmp_path / "model", volumes.LABELS)
    process = logic.startBackend(tmp_path / "session", model, "cpu", python=sys.executable)
    try:
        info = logic.waitForBackend(timeout=180)
        nodes = [
            volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray() + 40 * n, f"patient_{n}")
            for n in range(4)
        ]
        logic.tagSceneVolumes(logic.submitVolumeFiles(logic.exportSceneVolumes(nodes)))

        # Ranking without waiting: the first answer comes at once, the scoring job's progress follows.
        started = time.monotonic()
        first = logic.requestRanking()
        firstAnswerSeconds = time.monotonic() - started
        progress = []
        ranking = logic.waitForRanking(timeout=240, interval=0.2, onProgress=lambda r: progress.append(r.job))

        # Next case, with the model version that made its prediction; saved without training.
        firstFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
        firstCase = logic.loadCase(firstFiles)
        volumes.paintSegment(mrml, firstCase)
        batched = logic.saveCase(
            firstCase.case.id, firstCase.segmentationNode, firstCase.volumeNode, train=False
        )

        # The next one, saved and trained on: a round on both masks.
        secondFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
        secondCase = logic.loadCase(secondFiles, firstCase.case.id, LeavePolicy.HIDE)
        volumes.paintSegment(mrml, secondCase)
        # Two steps of a tiny model may validate worse than its parent: activate it anyway (the guard is
        # the engine's tests' subject), so that the rest of the flow runs on the new version.
        trained = logic.saveCase(
            secondCase.case.id,
            secondCase.segmentationNode,
            secondCase.volumeNode,
            train=True,
            steps=2,
            acceptWorse=True,
        )
        # Save and next: the next case comes at once, from the current ranking, while the round runs.
        servedAt = time.monotonic()
        duringRoundFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
        servedSeconds = time.monotonic() - servedAt
        roundWhenServed = logic.fetchJob(trained.job.id)
        job = logic.waitForJob(trained.job.id, timeout=300, interval=0.2)
        rescored = logic.waitForRanking(timeout=240, interval=0.2)  # the new version scores the pool

        # The next case comes with the new model version.
        thirdFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
        thirdCase = logic.loadCase(thirdFiles, secondCase.case.id, LeavePolicy.CLOSE)

        # Roll back to the first version: the next prediction comes from it again.
        versions = logic.fetchModelVersions()
        rolledBack = logic.activateModelVersion(info.modelVersion)
        againFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene(), thirdCase.case.id)

        # Remove an unlabelled case (DELETE /cases/{id}); a scoring job in the way is cancelled first.
        remaining = next(
            c for c in logic.caseTable.cases if c.status.value != "labelled" and c.id != thirdCase.case.id
        )
        removed = logic.removeCase(remaining.id).id
        casesLeft = {c.id for c in logic._client().cases()}
        metrics = logic.fetchMetrics()

        # Rank by another strategy from now on (the strategy selector).
        offered = logic.fetchQuerySettings()
        chosen = logic.setQueryStrategy("random")
        chosenLater = logic.fetchQuerySettings().strategy
    finally:
        logic.stopBackend()

    assert firstAnswerSeconds < 5 and not first.complete and first.job.kind.value == "score"
    assert progress and [j.progress for j in progress] == sorted(j.progress for j in progress)
    assert ranking.complete and all(c.dkd is not None and c.asd is not None for c in ranking.cases)
    assert firstFiles.modelVersion == info.modelVersion
    assert firstCase.segmentationNode.GetAttribute("ASFDA.ModelVersion") == info.modelVersion
    assert batched.job is None and batched.case.status.value == "labelled"
    assert batched.effort is not None and batched.effort.modelVersion == info.modelVersion
    assert trained.job is not None and job.state.value == "done", job.message
    newVersion = job.modelVersion
    print(f"next case served in {servedSeconds:.2f} s; round then {roundWhenServed.state.value}")
    assert not roundWhenServed.state.finished, roundWhenServed  # served while the round ran
    assert duringRoundFiles.case.id != secondCase.case.id
    assert duringRoundFiles.modelVersion == info.modelVersion  # the prediction of the model in use
    assert newVersion != info.modelVersion and rescored.modelVersion == newVersion
    assert metrics[0].labelledCount == 2  # the batched mask was used by the round
    assert thirdFiles.modelVersion == newVersion and newVersion in thirdFiles.predictionPath.name
    assert thirdCase.segmentationNode.GetAttribute("ASFDA.ModelVersion") == newVersion
    assert logic.sceneLogic.caseNodes(secondCase.case.id) == []  # closed when the third case opened
    assert not firstCase.segmentationNode.GetDisplayNode().GetVisibility()  # hidden
    assert {v.id for v in versions} >= {info.modelVersion, newVersion}
    assert next(v for v in versions if v.id == newVersion).active
    assert rolledBack.modelVersion == info.modelVersion and againFiles.modelVersion == info.modelVersion
    assert removed == remaining.id and remaining.id not in casesLeft
    assert offered.strategy == "clasp" and {"random", "epistemic"} <= set(offered.strategies)
    assert chosen.strategy == "random" and chosenLater == "random"
    assert process.state.value == "stopped" and waitGone(process.pid)
