"""The module's Logic without any GUI: real MRML (slicer-core), a backend on 127.0.0.1, real files.

``ASFDAModule.py`` is imported with the doubles of ``slicer_doubles.py`` for Qt and the scripted-module base
classes; its Logic, its parameter node defaults and its ScriptedLoadableModuleTest run as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import module_volumes as volumes
import numpy as np
import pytest
import SimpleITK as sitk
from module_fake_backend import TOKEN, useLocalBackend
from module_paths import MODULE_DIR, TESTING_DIR, importSlicerCore


def test_importing_the_module_file_loads_neither_torch_nor_monai_nor_the_engine():
    importSlicerCore()
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(MODULE_DIR)!r}, {str(TESTING_DIR)!r}]
        import slicer_doubles
        with slicer_doubles.installed():
            import ASFDAModule
        print(sorted(m for m in ("torch", "monai", "asfda") if m in sys.modules))
    """)
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().splitlines()[-1] == "[]"


def test_module_metadata_and_parameter_defaults(moduleFile, logic):
    parent = SimpleNamespace()
    moduleFile.ASFDAModule(parent)
    parameters = logic.getParameterNode()

    assert parent.title == "ASFDA" and parent.categories == ["Segmentation"]
    assert parameters.device == "auto" and parameters.fineTuneSteps == 0
    assert not hasattr(parameters, "fetchNextAutomatically")  # Save and next never waits for a round
    assert (parameters.sessionFolder, parameters.modelPath, parameters.dataFolder) == ("", "", "")  # not "."
    assert logic.getParameterNode().parameterNode is parameters.parameterNode  # one node per scene


def test_scene_volume_to_case_to_correction_to_new_model_version(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    volumeNode = volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray())

    exports = logic.exportSceneVolumes([volumeNode])
    added = logic.submitVolumeFiles(exports)
    logic.tagSceneVolumes(added)
    [(export, case)] = [(outcome.export, outcome.case) for outcome in added]
    logic.applyRanking(logic.fetchRanking())

    assert export.path.parent == fakeBackend.state.session / "imports"  # by path: nothing uploaded
    assert volumeNode.GetAttribute("ASFDA.CaseId") == case.id
    assert logic.caseTable.suggestedCase().id == case.id
    assert logic.caseIdsInScene() == {case.id}

    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene())
    annotation = logic.loadCase(caseFiles)

    assert caseFiles.imagePath is None  # already in the scene: not downloaded again
    assert annotation.volumeNode is volumeNode and annotation.case.id == case.id
    segmentation = annotation.segmentationNode.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(2)] == ["liver", "spleen"]
    editor = logic.sceneLogic.segmentEditorNode()
    assert editor.GetSegmentationNode() is annotation.segmentationNode
    assert editor.GetSourceVolumeNode() is volumeNode

    spleen = volumes.paintSegment(mrml, annotation)
    labelFile = logic.exportCorrection(case.id, annotation.segmentationNode, volumeNode)
    result = logic.submitCorrection(case.id, labelFile, steps=3)
    job = logic.waitForJob(result.job.id, timeout=20, interval=0.05)

    # The fake backend accepted the label map only after checking it against the case's stored geometry.
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(labelFile)))[spleen > 0].tolist() == [2] * int(
        spleen.sum()
    )
    assert result.case.status.value == "labelled" and "fine-tuning round" in result.message
    assert job.state.value == "done" and job.modelVersion == "v1"
    logic.applyRanking(logic.fetchRanking())
    assert logic.caseTable.modelVersion == "v1" and logic.caseTable.case(case.id).status.value == "labelled"
    diceChart, scoreChart = logic.updatePlots(logic.fetchMetrics())
    assert diceChart.GetNumberOfPlotSeriesNodes() == 1 and scoreChart.pickedTable.GetNumberOfRows() == 1


def test_a_mask_sent_while_a_round_runs_waits_for_the_next_round(mrml, logic, fakeBackend):
    useLocalBackend(logic, fakeBackend)
    fakeBackend.state.jobSeconds = 2.0
    volumeNode = volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray())
    logic.tagSceneVolumes(logic.submitVolumeFiles(logic.exportSceneVolumes([volumeNode])))
    annotation = logic.loadCase(logic.fetchCaseFiles("tester", logic.caseIdsInScene()))
    labelFile = logic.exportCorrection(annotation.case.id, annotation.segmentationNode, volumeNode)

    first = logic.submitCorrection(annotation.case.id, labelFile)
    second = logic.submitCorrection(annotation.case.id, labelFile)
    cancelled = logic.cancelJob(first.job.id)

    assert first.job is not None and second.job is None
    assert "already running" in second.message and "next one" in second.message
    assert cancelled.state.value == "cancelled"


def test_remote_backend_gets_volumes_by_upload_and_sends_them_back(mrml, logic, fakeBackend, tmp_path):
    logic.connect(fakeBackend.url, TOKEN)
    volumeNode = volumes.addVolume(mrml.slicer, mrml.scene, volumes.intensityArray(), "scene volume")
    folder = tmp_path / "elsewhere"  # not readable by the backend: its files are uploaded instead
    folder.mkdir()
    image = sitk.GetImageFromArray(volumes.intensityArray())
    image.SetSpacing(volumes.SPACING)
    sitk.WriteImage(image, str(folder / "from folder.nii.gz"))
    (folder / "notes.txt").write_text("not a volume")

    [added] = logic.submitVolumeFiles(logic.exportSceneVolumes([volumeNode]))
    export, sceneCase = added.export, added.case
    [folderCase] = logic.addFolder(folder)
    logic.applyRanking(logic.fetchRanking())
    caseFiles = logic.fetchCaseFiles("tester", logic.caseIdsInScene(), caseId=folderCase.id)
    annotation = logic.loadCase(caseFiles)

    assert export.path.parent == logic.cacheDir / "uploads" and not logic.backendIsLocal
    assert folderCase.name == "from folder" and sceneCase.id != folderCase.id
    assert caseFiles.imagePath is not None and caseFiles.imagePath.exists()
    assert annotation.volumeNode is not volumeNode
    assert annotation.volumeNode.GetAttribute("ASFDA.CaseId") == folderCase.id
    np.testing.assert_array_equal(
        mrml.slicer.util.arrayFromVolume(annotation.volumeNode), volumes.intensityArray()
    )
    # Opening the same case again keeps the segmentation, which may hold unsaved corrections.
    assert logic.loadCase(caseFiles).segmentationNode is annotation.segmentationNode


def test_a_ranking_refused_while_the_pool_changes_is_asked_again(logic, fakeBackend):
    from ASFDAModuleLib.BackendClient import BackendError

    logic.connect(fakeBackend.url, TOKEN)
    fakeBackend.state.rankingConflicts = 2
    assert logic.fetchRanking(pause=0.01).modelVersion == "v0"

    fakeBackend.state.rankingConflicts = 3
    with pytest.raises(BackendError, match="ask again"):
        logic.fetchRanking(pause=0.01)


def test_no_backend_is_a_clear_error(logic):
    with pytest.raises(RuntimeError, match="no backend: start one, or connect to one by its URL"):
        logic.fetchRanking()
    with pytest.raises(ValueError, match="enter the backend's URL"):
        logic.connect("", None)
    with pytest.raises(ValueError, match="choose a session folder"):
        logic.startBackend(None)


FAKE_SERVE_WITH_HTTP = textwrap.dedent("""
    import argparse, json, os, pathlib, time
    from module_fake_backend import TOKEN, FakeBackend

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    for option in ("--session", "--model", "--device", "--port"):
        parser.add_argument(option)
    parser.add_argument("--allow-dir", action="append", default=[])
    args = parser.parse_args()
    backend = FakeBackend(pathlib.Path(args.session), args.allow_dir)
    backend.start()
    port = int(backend.url.rsplit(":", 1)[1])
    info = {"url": backend.url, "port": port, "token": TOKEN, "pid": os.getpid()}
    (pathlib.Path(args.session) / "server.json").write_text(json.dumps(info))
    print(f"ASFDA backend ready on {backend.url}", flush=True)
    while True:
        time.sleep(1)
""")


def test_logic_starts_waits_for_and_stops_a_local_backend(moduleFile, logic, tmp_path, monkeypatch):
    """The start/ready/stop path of the Logic, with `asfda serve` played by the fake backend in a process."""
    engine = tmp_path / "engine"
    (engine / "asfda").mkdir(parents=True)
    (engine / "asfda" / "__init__.py").write_text("")
    (engine / "asfda" / "__main__.py").write_text(FAKE_SERVE_WITH_HTTP)
    import ASFDAModuleLib.ModuleLogic as moduleLogic

    monkeypatch.setattr(moduleLogic, "MODULE_DIR", engine)
    monkeypatch.setenv("PYTHONPATH", str(TESTING_DIR))
    dataFolder = tmp_path / "data"
    dataFolder.mkdir()

    process = logic.startBackend(
        tmp_path / "session", None, "cpu", dataFolder=dataFolder, python=sys.executable
    )
    info = logic.waitForBackend(timeout=60)
    serverFile = json.loads((tmp_path / "session" / "server.json").read_text())
    logic.stopBackend()

    assert "--allow-dir" in process.launch.command() and str(dataFolder) in process.launch.command()
    assert info.labels[1] == "liver" and logic.backendIsLocal
    assert serverFile["url"] == process.serverInfo.url
    assert process.state.value == "stopped" and logic.client is None
    assert "ASFDA backend ready on" in (logic.cacheDir / "backend.log").read_text()


def test_the_module_self_test_runs_headless(moduleFile, mrml):
    """ASFDAModuleTest is what Slicer runs (Reload and Test); here on the doubles' base class."""
    moduleFile.ASFDAModuleTest().runTest()
