"""The module's workflow without any GUI: scripts, tests and the Widget call it.

Methods marked *network* block on the backend and touch neither Qt nor MRML (the Widget runs them on worker
threads); methods marked *scene* change the MRML scene and belong on the main thread.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import time

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from .BackendClient import BackendClient, BackendError, caseOfFile
from .BackendProcess import BackendLaunch, BackendProcess, BackendProcessProtocol, ServerInfo
from .BackendTypes import (
    BackendInfo,
    Case,
    CaseStatus,
    Job,
    JobKind,
    JobState,
    ModelVersion,
    QuerySettings,
    Ranking,
    RoundMetrics,
)
from .CaseMarks import CaseMark, CaseMarks, nextUnmarkedCase
from .CaseTable import CaseTableModel
from .EditEffort import EditEffortLog, EditRecord, changedFraction, editDice
from .i18n import _
from .InstallLogic import InstallLogic
from .Parameters import ASFDAModuleParameterNode
from .Paths import checkModelPath, pathOrNone, safeName
from .Plots import updateDicePlot, updateEditEffortPlot, updateScorePlot
from .SceneLogic import SceneLogic
from .Settings import LeavePolicy
from .SlicerEnvironment import backendEnvironment, defaultCacheDir, moduleLogic
from .WorkflowTypes import AnnotationCase, CaseFiles, SubmitResult, VolumeExport

MODULE_DIR = pathlib.Path(__file__).resolve().parent.parent  # holds ASFDAModule.py and the asfda package
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
HTTP_METHOD_NOT_ALLOWED = 405
HTTP_CONFLICT = 409
HTTP_FORBIDDEN = 403
MODULE_FOLDER = "slicer"  # the module's own files in a session folder (marks, edit effort)


class ASFDAModuleLogic(ScriptedLoadableModuleLogic):
    """Start or connect to a backend, fill the pool, rank it, serve cases, save masks, train, roll back."""

    def __init__(self, scene=None, cacheDir=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.sceneLogic = SceneLogic(self.scene, volumesLogic=moduleLogic("volumes"))
        self.caseTable = CaseTableModel()
        self.cacheDir = pathlib.Path(cacheDir) if cacheDir else defaultCacheDir()
        self.backendProcess: BackendProcessProtocol | None = None
        self.client: BackendClient | None = None
        self.info: BackendInfo | None = None
        self.sessionDir: pathlib.Path | None = None  # set for a backend this logic started
        self.marks: CaseMarks | None = None
        self.effort: EditEffortLog | None = None
        self.openCaseFiles: dict[str, CaseFiles] = {}

    def getParameterNode(self):
        return ASFDAModuleParameterNode(super().getParameterNode())

    def installLogic(self, confirm) -> InstallLogic:
        return InstallLogic(MODULE_DIR / "Resources" / "requirements.txt", confirm)

    # -- backend -----------------------------------------------------------------------------------

    def startBackend(self, sessionDir, model=None, device="auto", port=0, dataFolder=None, python=None):
        """Start ``asfda serve`` in the background; poll ``backendProcess.pollReady()`` or waitForBackend."""
        sessionDir = pathOrNone(sessionDir)
        if sessionDir is None:
            raise ValueError(
                _("choose a session folder for the backend (it holds the cases and model versions)")
            )
        model = checkModelPath(model)
        dataFolder = pathOrNone(dataFolder)
        self.stopBackend()
        self.sessionDir = sessionDir
        launch = BackendLaunch(
            sessionDir=self.sessionDir,
            model=model,
            device=device,
            port=port,
            python=python,
            enginePath=MODULE_DIR,
            allowDirs=[dataFolder] if dataFolder else [],
            environment=backendEnvironment(),
        )
        self.backendProcess = BackendProcess(launch, logFile=self.cacheDir / "backend.log")
        self.backendProcess.start()
        self._openModuleFiles(self.sessionDir / MODULE_FOLDER)
        return self.backendProcess

    def waitForBackend(self, timeout: float = 120.0) -> BackendInfo:
        """Blocking: wait until the started backend is ready and connect to it (scripts and tests)."""
        self.connectToServer(self.backendProcess.waitUntilReady(timeout))
        return self.fetchInfo()

    def connectToServer(self, serverInfo: ServerInfo) -> BackendClient:
        self.client = BackendClient(serverInfo.url, serverInfo.token)
        if self.marks is None and self.sessionDir is not None:
            self._openModuleFiles(self.sessionDir / MODULE_FOLDER)
        return self.client

    def connect(self, url: str, token: str | None) -> BackendClient:
        """Use a backend that runs elsewhere (a GPU server); volumes then travel by upload."""
        if not url:
            raise ValueError(_("enter the backend's URL, e.g. http://gpu-server:8000"))
        self.stopBackend()
        self.sessionDir = None
        self.client = BackendClient(url, token)
        # The module's own records of a remote session live in the cache, one folder per backend URL.
        self._openModuleFiles(self.cacheDir / "remote" / hashlib.sha1(url.encode()).hexdigest()[:12])
        return self.client

    def stopBackend(self) -> None:
        """Stop the backend this logic started, with its children; a remote backend is left alone."""
        if self.backendProcess is not None:
            self.backendProcess.stop()
            if self.backendIsLocal:
                self.client = None

    def forgetBackend(self) -> None:
        """The local backend exited by itself: drop it and its client (its log stays in the cache folder)."""
        self.backendProcess = None
        if self.backendIsLocal:
            self.client = None

    @property
    def backendIsLocal(self) -> bool:
        return self.sessionDir is not None

    def fetchInfo(self) -> BackendInfo:
        """*network*: asked again whenever the model may have changed (a round, an activation)."""
        self.info = self._client().info()
        return self.info

    # -- cases -------------------------------------------------------------------------------------

    def exportSceneVolumes(self, volumeNodes) -> list[VolumeExport]:
        """*scene*: write scene volumes where the backend can take them from."""
        folder = self.sessionDir / "imports" if self.backendIsLocal else self.cacheDir / "uploads"
        return [
            VolumeExport(node.GetID(), self.sceneLogic.exportVolumeForSession(node, folder))
            for node in volumeNodes
        ]

    def submitVolumeFiles(self, exports: list[VolumeExport]) -> list[tuple[VolumeExport, Case]]:
        """*network*: add the written volumes as cases (by path for a local backend, by upload otherwise)."""
        added = []
        for export in exports:
            if self.backendIsLocal:
                case = caseOfFile(self._client().addCaseFile(export.path), export.path)
            else:
                case = self._client().uploadCase(export.path)
            added.append((export, case))
        return added

    def tagSceneVolumes(self, added: list[tuple[VolumeExport, Case]]) -> None:
        """*scene*: remember which case each scene volume is, so it is not downloaded again."""
        for export, case in added:
            node = self.scene.GetNodeByID(export.nodeId)
            if node is not None:
                self.sceneLogic.tagCase(node, case.id)

    def addFolder(self, folder) -> list[Case]:
        """*network*: add every volume of a folder; uploads them if the backend may not read the folder."""
        folder = pathlib.Path(folder)
        try:
            return self._client().addCaseFolder(folder)
        except BackendError as error:
            if error.status != HTTP_FORBIDDEN:
                raise
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES)
        )
        return [self._client().uploadCase(path) for path in files]

    def removeCase(self, caseId: str) -> Case:
        """*network*: take a case out of the pool (``DELETE /cases/{id}``); a labelled case stays (409).

        A scoring job in the way is cancelled first, as for activation."""
        try:
            case = self._afterCancellingScoring(lambda client: client.removeCase(caseId))
        except BackendError as error:
            # No such route (an older backend): FastAPI answers 405 (GET /cases/{id} exists) or "Not Found".
            if error.status == HTTP_METHOD_NOT_ALLOWED or error.detail in ("Not Found", "Method Not Allowed"):
                raise BackendError(
                    error.method,
                    error.path,
                    error.status,
                    _("this backend cannot remove cases; update ASFDA"),
                ) from None
            raise
        if self.marks is not None:
            self.marks.unmark(caseId)
        return case

    # -- ranking -----------------------------------------------------------------------------------

    def requestRanking(self) -> Ranking:
        """*network*, answers at once: complete, or the scores so far and the scoring job to follow."""
        return self._client().ranking(wait=False)

    def waitForRanking(self, timeout: float = 1800.0, interval: float = 0.5, onProgress=None) -> Ranking:
        """Blocking (scripts and tests; the Widget polls requestRanking with a timer): each incomplete answer
        goes to ``onProgress(ranking)`` and to the case table, so the table fills in as scores arrive."""
        deadline = time.monotonic() + timeout
        while True:
            ranking = self.requestRanking()
            self.applyRanking(ranking)
            if ranking.complete:
                return ranking
            if onProgress is not None:
                onProgress(ranking)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the pool was not scored within {timeout:.0f} s ({ranking.job.message})")
            time.sleep(interval)

    def fetchRanking(self, attempts: int = 3, pause: float = 2.0) -> Ranking:
        """*network*, blocking: the complete ranking (the backend scores the pool first when needed).

        409 means the pool changed during scoring: asking again shortly after is the remedy the backend names.
        """
        for attempt in range(attempts):
            try:
                return self._client().ranking(wait=True)
            except BackendError as error:
                if error.status != HTTP_CONFLICT or attempt == attempts - 1:
                    raise
                time.sleep(pause)

    def applyRanking(self, ranking: Ranking) -> None:
        self.caseTable.setRanking(ranking)

    def caseIdsInScene(self) -> set:
        """*scene*"""
        return {case.id for case in self.caseTable.cases if self.sceneLogic.findCaseVolume(case.id)}

    # -- annotate ----------------------------------------------------------------------------------

    def fetchCaseFiles(self, annotator: str, caseIdsInScene: set, caseId: str | None = None) -> CaseFiles:
        """*network*: the next case for this annotator (or the given one), its volume and the prediction.

        The backend's info is asked again first: after a round or an activation the model version changed,
        and the prediction and the segmentation must carry the version that made them.
        """
        client = self._client()
        case = nextUnmarkedCase(client, self.marks, annotator) if caseId is None else self._knownCase(caseId)
        info = self.fetchInfo()
        folder = self.cacheDir / "cases" / safeName(case.id)
        imagePath = None
        if case.id not in caseIdsInScene:
            imagePath = client.downloadImage(case.id, folder / "image.nii.gz")
        predictionPath = client.downloadPrediction(
            case.id, folder / f"prediction-{safeName(info.modelVersion or 'model')}.nii.gz"
        )
        return CaseFiles(case, imagePath, predictionPath, info.labels, info.modelVersion, info.round)

    def loadCase(self, caseFiles: CaseFiles, previousCaseId: str | None = None, leave=LeavePolicy.KEEP):
        """*scene*: the case's volume and a segmentation made from the prediction, ready to correct.

        A segmentation already in the scene for this case is kept: it may hold corrections not yet saved.
        The previous case is hidden or closed first when ``leave`` says so (one case in focus at a time).
        """
        case = caseFiles.case
        if previousCaseId and previousCaseId != case.id:
            self.leaveCase(previousCaseId, leave)
        volume = self.sceneLogic.findCaseVolume(case.id)
        if volume is None:
            if caseFiles.imagePath is None:
                raise RuntimeError(f"case {case.name}: its volume left the scene; open the case again")
            volume = self.sceneLogic.loadVolume(caseFiles.imagePath, case.name)
            self.sceneLogic.tagCase(volume, case.id)
        segmentation = self.sceneLogic.findCaseSegmentation(case.id)
        if segmentation is None:
            segmentation = self.sceneLogic.segmentationFromFile(
                caseFiles.predictionPath, volume, caseFiles.labels, f"{case.name} segmentation"
            )
            self.sceneLogic.tagCase(segmentation, case.id, caseFiles.modelVersion)
        elif segmentation.GetDisplayNode() is not None:
            segmentation.GetDisplayNode().SetVisibility(True)
        self.sceneLogic.prepareSegmentEditor(segmentation, volume)
        self.openCaseFiles[case.id] = caseFiles
        return AnnotationCase(case, volume, segmentation)

    def leaveCase(self, caseId: str, policy: LeavePolicy) -> int:
        """*scene*: hide or close a case's nodes (KEEP leaves them); returns how many nodes it changed."""
        policy = LeavePolicy(policy)
        if policy is LeavePolicy.HIDE:
            return self.sceneLogic.hideCase(caseId)
        if policy is LeavePolicy.CLOSE:
            self.openCaseFiles.pop(caseId, None)
            return self.sceneLogic.closeCase(caseId)
        return 0

    def skipCase(self, caseId: str, note: str = ""):
        """Not now: "next" serves other cases first (kept in the session, survives a restart)."""
        return self._marks().mark(caseId, CaseMark.SKIPPED, note)

    def flagCase(self, caseId: str, note: str = ""):
        """Needs a second look: "next" does not serve it again (it can still be opened from the table)."""
        return self._marks().mark(caseId, CaseMark.FLAGGED, note)

    # -- save mask and fine-tune -------------------------------------------------------------------

    def exportCorrection(self, caseId: str, segmentationNode, volumeNode) -> pathlib.Path:
        """*scene*: the corrected segmentation as a label map in the case's geometry (and a .seg.nrrd)."""
        folder = self.cacheDir / "cases" / safeName(caseId)
        self.sceneLogic.saveSegmentationFile(segmentationNode, folder / "correction.seg.nrrd")
        return self.sceneLogic.writeLabelmapFile(segmentationNode, volumeNode, folder / "label.nii.gz")

    def measureEditEffort(self, caseId: str, labelFile) -> EditRecord | None:
        """*scene*: Dice between the model's prediction of the case and the mask about to be submitted.

        None when there is nothing to compare (the case was not opened from a prediction in this session) or
        the two do not compare: the measure must never keep a mask from being saved.
        """
        caseFiles = self.openCaseFiles.get(caseId)
        if caseFiles is None or not caseFiles.predictionPath.is_file():
            return None
        prediction = self.sceneLogic.readLabelmapArray(caseFiles.predictionPath)
        corrected = self.sceneLogic.readLabelmapArray(labelFile)
        if prediction.shape != corrected.shape:
            logging.warning(
                "ASFDA: no edit effort for %s: prediction %s, mask %s",
                caseId,
                prediction.shape,
                corrected.shape,
            )
            return None
        return EditRecord(
            caseId,
            caseFiles.case.name,
            caseFiles.modelVersion,
            caseFiles.round,
            editDice(prediction, corrected),
            changedFraction(prediction, corrected),
        )

    def saveCase(
        self, caseId, segmentationNode, volumeNode, train=True, steps=None, acceptWorse=False
    ) -> SubmitResult:
        """*scene* then *network*: export, measure the edit effort, submit, and start a round if ``train``.

        The Widget splits this at the export (scene) and the submission (network); scripts call it whole.
        """
        labelFile = self.exportCorrection(caseId, segmentationNode, volumeNode)
        effort = self.measureEditEffort(caseId, labelFile)
        return self.submitCorrection(caseId, labelFile, steps, train, effort, acceptWorse)

    def submitCorrection(
        self, caseId, labelFile, steps=None, startRound=True, effort=None, acceptWorse=False
    ) -> SubmitResult:
        """*network*: send the label map, then start a fine-tuning round (or learn that one is running).

        ``acceptWorse``: the round becomes the active model even if it validates worse than its parent."""
        case = self._client().submitLabel(caseId, labelFile)
        if effort is not None and self.effort is not None:
            self.effort.add(effort)
        if self.marks is not None:
            self.marks.unmark(caseId)
        if not startRound:
            return SubmitResult(
                case,
                None,
                _("Mask of {name} saved; train when you are ready.").format(name=case.name),
                effort,
            )
        try:
            job = self._client().startFineTuning(steps, acceptWorse)
        except BackendError as error:
            if error.status != HTTP_CONFLICT:
                raise
            message = _(
                "Mask of {name} saved; a round is already running, so it will be used in the next one "
                "({detail})."
            )
            return SubmitResult(case, None, message.format(name=case.name, detail=error.detail), effort)
        verb = _("queued") if job.state is JobState.QUEUED else _("started")
        return SubmitResult(
            case,
            job,
            _("Mask of {name} saved; fine-tuning round {verb}.").format(name=case.name, verb=verb),
            effort,
        )

    def startRound(self, steps: int | None = None, acceptWorse: bool = False) -> Job:
        """*network*: fine-tune on every mask saved so far (after "Save without training")."""
        return self._client().startFineTuning(steps, acceptWorse)

    def fetchJob(self, jobId: str) -> Job:
        """*network*"""
        return self._client().job(jobId)

    def cancelJob(self, jobId: str) -> Job:
        """*network*: a fine-tuning round or a scoring job."""
        return self._client().cancelJob(jobId)

    def waitForJob(self, jobId: str, timeout: float = 600.0, interval: float = 0.5) -> Job:
        """Blocking: poll a job until it ends (scripts and tests; the widget polls with a timer)."""
        deadline = time.monotonic() + timeout
        job = self.fetchJob(jobId)
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(interval)
            job = self.fetchJob(jobId)
        return job

    # -- model versions ----------------------------------------------------------------------------

    def fetchModelVersions(self) -> list[ModelVersion]:
        """*network*"""
        return self._client().modelVersions()

    def activateModelVersion(self, version: str) -> BackendInfo:
        """*network*: roll back (or forward) to a model version; the next predictions come from it.

        A scoring job in the way is cancelled first: it scores the version being left, and the activated one
        is scored anew.
        """
        self._afterCancellingScoring(lambda client: client.activateModelVersion(version))
        return self.fetchInfo()

    def _afterCancellingScoring(self, call):
        """Make a request the backend refuses (409) while a job runs; if a scoring job is what is in the way,
        cancel it and ask again (it is redone on demand). A fine-tuning round is never cancelled: its 409
        reaches the caller."""
        client = self._client()
        try:
            return call(client)
        except BackendError as error:
            scoring = [j for j in client.jobs() if j.kind is JobKind.SCORE and not j.state.finished]
            if error.status != HTTP_CONFLICT or not scoring:
                raise
            for job in scoring:
                client.cancelJob(job.id)
            return call(client)

    # -- query strategy ----------------------------------------------------------------------------

    def fetchQuerySettings(self) -> QuerySettings:
        """*network*: the strategy in use and the ones the engine offers."""
        return self._client().querySettings()

    def setQueryStrategy(self, strategy: str) -> QuerySettings:
        """*network*: rank by another strategy from now on (kept in the session; the ranking follows)."""
        return self._client().setQuery(strategy=strategy)

    # -- plots -------------------------------------------------------------------------------------

    def fetchMetrics(self) -> list[RoundMetrics]:
        """*network*"""
        return self._client().metrics()

    def updatePlots(self, metrics: list[RoundMetrics]):
        """*scene*: Dice per round, and DKD against ASD for the cases of the table."""
        return updateDicePlot(self.scene, metrics), updateScorePlot(self.scene, self.caseTable.cases)

    def updateEditEffortPlot(self):
        """*scene*: the edit Dice of each submitted case and its mean per round."""
        return updateEditEffortPlot(self.scene, self.effort.records() if self.effort else [])

    def progress(self) -> tuple[int, int]:
        """(labelled, total) cases of the table."""
        cases = self.caseTable.cases
        return sum(case.status is CaseStatus.LABELLED for case in cases), len(cases)

    # -- helpers -----------------------------------------------------------------------------------

    def _client(self) -> BackendClient:
        if self.client is None:
            raise RuntimeError(_("no backend: start one, or connect to one by its URL"))
        return self.client

    def _marks(self) -> CaseMarks:
        if self.marks is None:
            raise RuntimeError(_("no session: start a backend or connect to one first"))
        return self.marks

    def _openModuleFiles(self, folder: pathlib.Path) -> None:
        self.marks, self.effort = CaseMarks(folder), EditEffortLog(folder)

    def _knownCase(self, caseId: str) -> Case:
        case = self.caseTable.case(caseId)
        if case is None:
            case = next((c for c in self._client().cases() if c.id == caseId), None)
        if case is None:
            raise KeyError(f"the backend has no case {caseId!r}")
        return case
