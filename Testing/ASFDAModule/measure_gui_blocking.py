"""How long the module's steps block the GUI thread, before and after issue 21's background I/O.

Run: ``PYTHONPATH=ASFDAModule .venv/bin/python Testing/ASFDAModule/measure_gui_blocking.py [--backend]``

Real MRML (slicer-core) and the fake backend, as in the module tests. For each step it prints the longest
time the GUI thread could not run: the scene work the Widget does on it, and the longest gap of a 5 ms
ticker on it while the worker does the rest (a worker that holds Python's lock blocks the GUI thread too:
VTK in slicer-core does, SimpleITK does not). "before" runs the former code path (compressed MRML writes and
reads on the GUI thread, a synchronous backend stop), "after" the Widget's present one. ``--backend`` also
starts the engine's backend (a tiny model, about 10 s on two cores) to time its stop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

TESTING_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTING_DIR), str(TESTING_DIR.parents[1] / "ASFDAModule")]

import module_volumes as volumes  # noqa: E402 - needs the path above
import slicer  # noqa: E402
import slicer_doubles  # noqa: E402
from module_fake_backend import FakeBackend, useLocalBackend  # noqa: E402


def sceneWithLogics():
    """As the ``mrml`` fixture of conftest.py: a scene with the Volumes and Segmentations logics."""
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    colorLogic = appLogic.GetColorLogic()
    colorLogic.SetMRMLScene(scene)
    appLogic.SetModuleLogic("Colors", colorLogic)
    logics = {}
    for name, logic in (
        ("Volumes", slicer.vtkSlicerVolumesLogic()),
        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
    ):
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        appLogic.SetModuleLogic(name, logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    slicer.modules = SimpleNamespace(
        volumes=SimpleNamespace(logic=lambda: logics["Volumes"]),
        segmentations=SimpleNamespace(logic=lambda: logics["Segmentations"]),
    )
    return scene, appLogic, logics


def onGuiThread(function, *args):
    """(result, seconds) of a call the GUI thread makes."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def onWorker(function, *args, tick: float = 0.005):
    """(result, longest gap of a ticker on this thread while a worker runs the call)."""
    box = {}
    worker = threading.Thread(target=lambda: box.update(result=function(*args)))
    last = time.perf_counter()
    longest = 0.0
    worker.start()
    while worker.is_alive():
        time.sleep(tick)
        now = time.perf_counter()
        longest, last = max(longest, now - last - tick), now
    worker.join()
    return box.get("result"), longest


def ctLike(shape, seed: int) -> np.ndarray:
    """Smooth anatomy-like intensities with noise: compresses like a scan, not like zeros or white noise."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape, dtype=np.float32)
    smooth = 400 * np.sin(i / 9.0) * np.cos(j / 13.0) + 3 * k
    return (smooth + rng.normal(0, 30, shape)).astype(np.int16)


def addNodes(scene, count, shape, prefix):
    nodes = []
    for n in range(count):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{prefix}{n}")
        node.SetSpacing(*volumes.SPACING)
        node.SetIJKToRASDirections(volumes.obliqueDirections())
        slicer.util.updateVolumeFromArray(node, ctLike(shape, n))
        nodes.append(node)
    return nodes


def paint(annotation, shape):
    segmentation = annotation.segmentationNode
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(s // 4, s // 2) for s in shape)] = 1
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("spleen")
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, annotation.volumeNode)


def measure(pool: int, poolShape, caseShape, modes) -> dict[str, dict[str, float]]:
    """{step: {mode: seconds}} for the modes asked ("before", "after")."""
    from ASFDAModuleLib.WorkflowTypes import CaseFiles

    from ASFDAModule import ASFDAModuleLogic

    rows: dict[str, dict[str, float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="asfda-gui-"))
    scene, _appLogic, _logics = sceneWithLogics()
    backend = FakeBackend(workdir / "session")
    backend.start()
    logic = ASFDAModuleLogic(scene=scene, cacheDir=workdir / "cache")
    useLocalBackend(logic, backend)
    try:
        # Add scene volumes: before, compressed MRML writes on the GUI thread; after, copies on it.
        step = rows.setdefault(f"add {pool} scene volumes {poolShape}", {})
        if "before" in modes:
            nodes = addNodes(scene, pool, poolShape, "before")
            folder = workdir / "before-imports"
            step["before"] = onGuiThread(
                lambda: [logic.sceneLogic.exportVolumeForSession(n, folder) for n in nodes]
            )[1]
        if "after" in modes:
            nodes = addNodes(scene, pool, poolShape, "after")
            snapshots, guiSeconds = onGuiThread(logic.snapshotSceneVolumes, nodes)
            _, gap = onWorker(logic.addVolumeSnapshots, snapshots)
            step["after"] = max(guiSeconds, gap)

        # Open a case whose volume is not in the scene (as for a case added from a folder).
        caseNode = addNodes(scene, 1, caseShape, "case")[0]
        case = logic.submitVolumeFiles(logic.exportSceneVolumes([caseNode]))[0].case
        scene.RemoveNode(caseNode)
        logic.fetchInfo()
        step = rows.setdefault(f"open a case {caseShape}", {})
        if "before" in modes:  # the files as downloaded (compressed), read on the GUI thread
            client, folder = logic._client(), workdir / "compressed"
            caseFiles = CaseFiles(
                case,
                client.downloadImage(case.id, folder / "image.nii.gz"),
                client.downloadPrediction(case.id, folder / "prediction.nii.gz"),
                logic.info.labels,
                logic.info.modelVersion,
            )
            opened, step["before"] = onGuiThread(logic.loadCase, caseFiles)
        if "after" in modes:
            if "before" in modes:
                logic.sceneLogic.closeCase(case.id)
            caseFiles, gap = onWorker(logic.fetchCaseFiles, "tester", set(), case.id)
            opened, guiSeconds = onGuiThread(logic.loadCase, caseFiles)
            step["after"] = max(guiSeconds, gap)

        # Save: before, the .seg.nrrd and the label map written and both label maps read on the GUI thread.
        paint(opened, caseShape)
        step = rows.setdefault(f"save the mask {caseShape}", {})
        if "before" in modes:

            def saveBefore():
                folder = workdir / "before-save"
                segmentation, volume = opened.segmentationNode, opened.volumeNode
                logic.sceneLogic.saveSegmentationFile(segmentation, folder / "correction.seg.nrrd")
                labelFile = logic.sceneLogic.writeLabelmapFile(segmentation, volume, folder / "label.nii.gz")
                logic.sceneLogic.readLabelmapArray(caseFiles.predictionPath)
                return logic.sceneLogic.readLabelmapArray(labelFile)

            step["before"] = onGuiThread(saveBefore)[1]
        if "after" in modes:
            snapshot, guiSeconds = onGuiThread(
                logic.snapshotCorrection, case.id, opened.segmentationNode, opened.volumeNode
            )
            _, gap = onWorker(logic.submitSnapshot, case.id, snapshot, None, False)
            step["after"] = max(guiSeconds, gap)
    finally:
        backend.stop()
    return rows


def measureBackendStop(modes) -> dict[str, float]:
    """Stopping the engine's backend: before on the GUI thread, after as cleanup() does it (a thread)."""
    from module_processes import writeTinyModel

    from ASFDAModule import ASFDAModuleLogic

    workdir = Path(tempfile.mkdtemp(prefix="asfda-stop-"))
    scene, _appLogic, _logics = sceneWithLogics()
    model = writeTinyModel(workdir / "model", volumes.LABELS)
    stops = {}
    for mode in modes:
        logic = ASFDAModuleLogic(scene=scene, cacheDir=workdir / f"cache-{mode}")
        logic.startBackend(workdir / f"session-{mode}", model, "cpu", python=sys.executable)
        logic.waitForBackend(timeout=180)
        if mode == "after":
            stops[mode] = onWorker(logic.stopBackend)[1]
        else:
            stops[mode] = onGuiThread(logic.stopBackend)[1]
    return stops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=10, help="scene volumes to add")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is printed")
    parser.add_argument("--only", choices=["before", "after"], help="one mode (before: the former paths)")
    parser.add_argument("--backend", action="store_true", help="also time stopping the engine's backend")
    arguments = parser.parse_args()
    modes = [arguments.only] if arguments.only else ["before", "after"]
    runs = []
    with slicer_doubles.installed():
        for _ in range(arguments.repeat):
            rows = measure(arguments.pool, (64, 96, 96), (160, 192, 192), modes)
            if arguments.backend:
                rows["stop the backend (cleanup)"] = measureBackendStop(modes)
            runs.append(rows)
    print(f"GUI-thread blocking, median of {arguments.repeat} runs (seconds)")
    print(f"{'step':<44}" + "".join(f"{mode:>10}" for mode in modes))
    for step in runs[0]:
        medians = [statistics.median(run[step][mode] for run in runs) for mode in modes]
        print(f"{step:<44}" + "".join(f"{value:>10.3f}" for value in medians))


if __name__ == "__main__":
    main()
