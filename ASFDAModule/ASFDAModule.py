"""ASFDA: active source-free domain adaptation of a 3D segmentation model, driven from Slicer.

The backend (``asfda serve``) ranks unlabelled volumes by DKD and ASD; the radiologist corrects the model's
prediction of the suggested case in the Segment Editor; the backend fine-tunes and the scores refresh.

Template order: Module, parameter node, Widget (wiring only), Logic (no GUI: scripts and tests call it),
Test. torch, MONAI and the engine are never imported here: they run in the backend process, and their
dependencies are installed on first use.
"""

import logging
import os
import pathlib
import tempfile
import time
from dataclasses import dataclass
from typing import Annotated

import qt
import slicer
from ASFDAModuleLib.BackendClient import BackendClient, BackendError
from ASFDAModuleLib.BackendProcess import (
    BackendLaunch,
    BackendProcess,
    BackendProcessProtocol,
    BackendState,
    ServerInfo,
)
from ASFDAModuleLib.BackendTypes import BackendInfo, Case, Job, JobState, Ranking, RoundMetrics
from ASFDAModuleLib.BackgroundTasks import BackgroundTasks
from ASFDAModuleLib.CaseTable import CaseColumn, CaseTableModel
from ASFDAModuleLib.InstallLogic import InstallLogic
from ASFDAModuleLib.Plots import updateDicePlot, updateScorePlot
from ASFDAModuleLib.SceneLogic import SceneLogic
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = pathlib.Path(__file__).resolve().parent
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
HTTP_CONFLICT = 409
HTTP_FORBIDDEN = 403

#
# ASFDAModule
#


class ASFDAModule(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ASFDA"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "SegmentEditor"]
        self.parent.contributors = ["ASFDA developers"]
        self.parent.helpText = """
Adapt a pretrained 3D segmentation model to your own scans with as few corrections as possible.
The backend ranks the unlabelled volumes by knowledge divergence (DKD) and segmentation difficulty (ASD);
correct the model's prediction of the suggested case, save it, and the model is fine-tuned for the next one.
"""
        self.parent.acknowledgementText = """
Method after Yang, Marcus and Sotiras, "Adapting Medical Vision Foundation Models for Volumetric Medical Image
Segmentation via Active Learning and Selective Semi-supervised Fine-tuning" (arXiv 2509.10784), in this
project's own formulation.
"""


#
# ASFDAModuleParameterNode
#


@parameterNodeWrapper
class ASFDAModuleParameterNode:
    """What the user chose, saved with the scene (the backend token is not: it is a secret)."""

    sessionFolder: pathlib.Path
    modelPath: pathlib.Path
    dataFolder: pathlib.Path
    device: Annotated[str, Choice(["auto", "cuda", "cpu"])] = "auto"
    backendUrl: str = ""
    annotatorName: str = "slicer"
    fineTuneSteps: Annotated[int, WithinRange(0, 1000000)] = 0  # 0: the backend's default
    fetchNextAutomatically: bool = False
    currentCaseId: str = ""
    currentVolume: slicer.vtkMRMLScalarVolumeNode
    currentSegmentation: slicer.vtkMRMLSegmentationNode


#
# ASFDAModuleWidget
#


class ASFDAModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the UI to the logic; every backend call goes through background tasks polled by a timer."""

    POLL_INTERVAL_MS = 100
    JOB_INTERVAL_MS = 1000

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobId = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ASFDAModule.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = ASFDAModuleLogic()
        self.tasks = BackgroundTasks()
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self.pollTimer.timeout.connect(self.onPoll)
        self.pollTimer.start()
        self.jobTimer = qt.QTimer()
        self.jobTimer.setInterval(self.JOB_INTERVAL_MS)
        self.jobTimer.timeout.connect(self.onJobTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        slicer.app.aboutToQuit.connect(self.logic.stopBackend)

        self.ui.startBackendButton.clicked.connect(self.onStartBackend)
        self.ui.stopBackendButton.clicked.connect(self.onStopBackend)
        self.ui.connectButton.clicked.connect(self.onConnect)
        self.ui.addSceneVolumesButton.clicked.connect(self.onAddSceneVolumes)
        self.ui.addFolderButton.clicked.connect(self.onAddFolder)
        self.ui.refreshButton.clicked.connect(self.onRefresh)
        self.ui.annotateNextButton.clicked.connect(self.onAnnotateNext)
        self.ui.submitButton.clicked.connect(self.onSubmit)
        self.ui.cancelRoundButton.clicked.connect(self.onCancelRound)
        self.ui.showPlotsButton.clicked.connect(self.onShowPlots)
        self.ui.plotChartSelector.currentNodeChanged.connect(self.onPlotChartSelected)
        self.ui.casesTable.horizontalHeader().sectionClicked.connect(self.onSortColumn)
        self.ui.casesTable.cellDoubleClicked.connect(self.onCaseDoubleClicked)

        self._setUpCasesTable()
        self.initializeParameterNode()
        self._updateButtons()

    def cleanup(self) -> None:
        """Slicer closes or the module is reloaded: stop timers, workers and the backend with its children."""
        self.pollTimer.stop()
        self.jobTimer.stop()
        self.tasks.shutdown()
        self.logic.stopBackend()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- backend -----------------------------------------------------------------------------------

    def onStartBackend(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the ASFDA backend.", waitCursor=True):
            if not self.logic.installLogic(slicer.util.confirmOkCancelDisplay).ensureDependencies():
                return
            p = self._parameterNode
            self.logic.startBackend(
                _pathOrNone(p.sessionFolder),
                _pathOrNone(p.modelPath),
                p.device,
                dataFolder=_pathOrNone(p.dataFolder),
            )
            self.ui.backendLog.clear()
            self._setStatus("Backend starting...")
        self._updateButtons()

    def onStopBackend(self) -> None:
        # Stopping waits for the backend to finish what it writes: off the GUI thread.
        self._setStatus("Stopping the backend...")
        self._runTask("stop backend", self.logic.stopBackend, self._onBackendStopped, "Stopping failed.")

    def _onBackendStopped(self, _) -> None:
        self._setStatus("Backend stopped.")
        self._updateButtons()

    def onConnect(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to connect to the backend."):
            self.logic.connect(self._parameterNode.backendUrl, self.ui.tokenLineEdit.text or None)
            self._runTask("info", self.logic.fetchInfo, self._onBackendInfo, "Cannot reach the backend.")

    def onPoll(self) -> None:
        """Every 100 ms on the GUI thread: finished background calls, the backend's log and readiness."""
        self.tasks.poll()
        process = self.logic.backendProcess
        if process is None:
            return
        for line in process.takeNewLogLines():
            self.ui.backendLog.appendPlainText(line)
        state = process.state
        if state is BackendState.STARTING:
            serverInfo = process.pollReady()
            if serverInfo is not None:
                self.logic.connectToServer(serverInfo)
                self._runTask("info", self.logic.fetchInfo, self._onBackendInfo, "Cannot reach the backend.")
        elif state is BackendState.EXITED:
            wasReady = process.serverInfo is not None
            self.logic.forgetBackend()
            self._updateButtons()
            what = "stopped unexpectedly" if wasReady else "did not start"
            self._setStatus(f"The backend {what} (exit code {process.returnCode}).")
            slicer.util.errorDisplay(
                f"The ASFDA backend {what} (exit code {process.returnCode}).",
                detailedText="Last lines of its log:\n" + process.logTail(),
            )

    def _onBackendInfo(self, info: BackendInfo) -> None:
        self._setStatus(info.summary)
        self._updateButtons()
        self.onRefresh()

    # -- cases -------------------------------------------------------------------------------------

    def onAddSceneVolumes(self) -> None:
        nodes = self.ui.sceneVolumesSelector.checkedNodes()
        if not nodes:
            slicer.util.warningDisplay("Check the volumes to add in the list first.")
            return
        with slicer.util.tryWithErrorDisplay("Failed to write the volumes for the session.", waitCursor=True):
            exports = self.logic.exportSceneVolumes(nodes)
            self._runTask(
                "add volumes",
                self.logic.submitVolumeFiles,
                self._onVolumesAdded,
                "The backend did not add the volumes.",
                exports,
            )

    def _onVolumesAdded(self, added) -> None:
        self.logic.tagSceneVolumes(added)
        self.onRefresh()

    def onAddFolder(self) -> None:
        folder = _pathOrNone(self._parameterNode.dataFolder)
        if folder is None:
            slicer.util.warningDisplay("Choose the folder of volumes first.")
            return
        self._runTask(
            "add folder",
            self.logic.addFolder,
            lambda cases: self.onRefresh(),
            f"The backend did not add the volumes of {folder}.",
            folder,
        )

    def onRefresh(self) -> None:
        if self.logic.client is None:
            return
        self._setStatus(
            "Scoring the pool..." if not self.logic.caseTable.cases else "Refreshing the cases..."
        )
        self._runTask("ranking", self.logic.fetchRanking, self._onRanking, "Failed to get the ranking.")

    def _onRanking(self, ranking: Ranking) -> None:
        self.logic.applyRanking(ranking)
        self._showCases()
        self._setStatus(
            f"Model version {ranking.modelVersion or '?'}, round {ranking.round or 0}: "
            f"{self.logic.caseTable.statusSummary()}."
        )

    def onSortColumn(self, columnIndex: int) -> None:
        model = self.logic.caseTable
        model.sortBy(CaseTableModel.columns[columnIndex])
        order = qt.Qt.AscendingOrder if model.ascending else qt.Qt.DescendingOrder
        self.ui.casesTable.horizontalHeader().setSortIndicator(columnIndex, order)
        self._showCases()

    def onCaseDoubleClicked(self, row: int, column: int) -> None:
        item = self.ui.casesTable.item(row, 0)
        if item is not None:
            self._openCase(item.data(qt.Qt.UserRole))

    # -- annotate and fine-tune --------------------------------------------------------------------

    def onAnnotateNext(self) -> None:
        self._openCase(None)

    def _openCase(self, caseId) -> None:
        self._setStatus("Loading the case and the model's prediction...")
        self._runTask(
            "open case",
            self.logic.fetchCaseFiles,
            self._onCaseFiles,
            "Failed to load the case.",
            self._parameterNode.annotatorName or "slicer",
            self.logic.caseIdsInScene(),
            caseId,
        )

    def _onCaseFiles(self, caseFiles) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to show the case.", waitCursor=True):
            annotation = self.logic.loadCase(caseFiles)
            p = self._parameterNode
            p.currentCaseId = annotation.case.id
            p.currentVolume = annotation.volumeNode
            p.currentSegmentation = annotation.segmentationNode
            self._showInViews(annotation)
            self._setStatus(
                f"Correct case {annotation.case.name} in the Segment Editor, then come back and save it."
            )
        self._updateButtons()

    def _showInViews(self, annotation) -> None:
        slicer.util.setSliceViewerLayers(background=annotation.volumeNode, fit=True)
        self.logic.sceneLogic.prepareSegmentEditor(annotation.segmentationNode, annotation.volumeNode)
        slicer.util.selectModule("SegmentEditor")
        self.logic.sceneLogic.jumpSlicesTo(
            self.logic.sceneLogic.focusPoint(annotation.segmentationNode, annotation.volumeNode)
        )

    def onSubmit(self) -> None:
        p = self._parameterNode
        if not p.currentCaseId or p.currentSegmentation is None or p.currentVolume is None:
            slicer.util.warningDisplay("Open a case with 'Annotate next' first.")
            return
        with slicer.util.tryWithErrorDisplay("Failed to save the mask.", waitCursor=True):
            labelFile = self.logic.exportCorrection(p.currentCaseId, p.currentSegmentation, p.currentVolume)
            steps = p.fineTuneSteps or None
            self._runTask(
                "submit",
                self.logic.submitCorrection,
                self._onSubmitted,
                "The backend did not take the mask.",
                p.currentCaseId,
                labelFile,
                steps,
            )
            self._setStatus("Sending the mask...")

    def _onSubmitted(self, result) -> None:
        self._setStatus(result.message)
        if result.job is not None:
            self._followJob(result.job)
        self.onRefresh()

    def _followJob(self, job: Job) -> None:
        self._jobId = job.id
        self._showJob(job)
        self.jobTimer.start()
        self._updateButtons()

    def onJobTimer(self) -> None:
        if self._jobId is not None:
            self._runTask(
                "job",
                self.logic.fetchJob,
                self._onJob,
                "Lost track of the fine-tuning round.",
                self._jobId,
                quiet=True,
            )

    def _onJob(self, job: Job) -> None:
        self._showJob(job)
        if not job.state.finished:
            return
        self.jobTimer.stop()
        self._jobId = None
        self._updateButtons()
        if job.state is JobState.DONE:
            self._setStatus(f"Round done: model version {job.modelVersion}.")
            self.onRefresh()
            if self._parameterNode.fetchNextAutomatically:
                self.onAnnotateNext()
        else:
            self._setStatus(f"Round {job.state.value}: {job.message}")

    def _showJob(self, job: Job) -> None:
        self.ui.roundProgressBar.setValue(int(round(100 * job.progress)))
        self.ui.roundProgressBar.setFormat(f"{job.state.value}: {job.message or '%p%'}")

    def onCancelRound(self) -> None:
        if self._jobId is not None:
            self._runTask(
                "cancel", self.logic.cancelJob, self._onJob, "Could not cancel the round.", self._jobId
            )

    # -- plots -------------------------------------------------------------------------------------

    def onShowPlots(self) -> None:
        self._runTask("metrics", self.logic.fetchMetrics, self._onMetrics, "Failed to get the metrics.")

    def _onMetrics(self, metrics) -> None:
        diceChart, _ = self.logic.updatePlots(metrics)
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
        if self.ui.plotChartSelector.currentNode() is None:
            self.ui.plotChartSelector.setCurrentNode(diceChart)
        self.onPlotChartSelected(self.ui.plotChartSelector.currentNode())

    def onPlotChartSelected(self, chartNode) -> None:
        if chartNode is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chartNode)

    # -- drawing -----------------------------------------------------------------------------------

    def _setUpCasesTable(self) -> None:
        table = self.ui.casesTable
        table.setColumnCount(len(CaseTableModel.columns))
        table.setHorizontalHeaderLabels([column.title for column in CaseTableModel.columns])
        table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        header = table.horizontalHeader()
        header.setSortIndicatorShown(True)  # sorting is the model's (unscored cases last), not Qt's
        header.setSortIndicator(CaseTableModel.columns.index(CaseColumn.RANK), qt.Qt.AscendingOrder)
        header.setStretchLastSection(True)

    def _showCases(self) -> None:
        table = self.ui.casesTable
        rows = self.logic.caseTable.rows()
        table.setRowCount(len(rows))
        highlight = qt.QBrush(qt.QColor(255, 236, 179))
        stale = qt.QBrush(qt.QColor(128, 128, 128))
        for rowIndex, row in enumerate(rows):
            for columnIndex, text in enumerate(row.cells):
                item = qt.QTableWidgetItem(text)
                item.setData(qt.Qt.UserRole, row.caseId)
                if row.suggested:
                    item.setBackground(highlight)
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if row.stale:
                    item.setForeground(stale)
                    item.setToolTip("Scored with an earlier model version; refresh after the round ends.")
                table.setItem(rowIndex, columnIndex, item)
        suggested = self.logic.caseTable.suggestedCase()
        if suggested is not None:
            table.scrollToItem(table.item(self.logic.caseTable.rowIndexOfCase(suggested.id), 0))
        self.ui.casesSummaryLabel.text = self.logic.caseTable.statusSummary()

    def _updateButtons(self) -> None:
        process = self.logic.backendProcess
        running = process is not None and process.state in (BackendState.STARTING, BackendState.READY)
        connected = self.logic.client is not None
        self.ui.startBackendButton.enabled = not running
        self.ui.stopBackendButton.enabled = running
        for button in (
            self.ui.addSceneVolumesButton,
            self.ui.addFolderButton,
            self.ui.refreshButton,
            self.ui.annotateNextButton,
            self.ui.showPlotsButton,
        ):
            button.enabled = connected
        self.ui.submitButton.enabled = connected and bool(
            self._parameterNode and self._parameterNode.currentCaseId
        )
        self.ui.cancelRoundButton.enabled = self._jobId is not None

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        logging.info("ASFDA: %s", text)

    def _runTask(self, name, function, onDone, failure: str, *args, quiet: bool = False) -> None:
        def onError(error):
            self._updateButtons()
            if quiet:
                logging.warning("ASFDA: %s %s", failure, error)
            else:
                slicer.util.errorDisplay(f"{failure}\n\n{error}")

        if not self.tasks.submit(name, function, *args, onDone=onDone, onError=onError) and not quiet:
            self._setStatus(f"Still busy with '{name}'; wait for it to finish.")


#
# ASFDAModuleLogic
#


@dataclass
class VolumeExport:
    """A scene volume written to a file for the session."""

    nodeId: str
    path: pathlib.Path


@dataclass
class CaseFiles:
    """What the backend sent for a case: its volume (None when already in the scene) and the prediction."""

    case: Case
    imagePath: pathlib.Path | None
    predictionPath: pathlib.Path
    labels: dict
    modelVersion: str | None


@dataclass
class AnnotationCase:
    case: Case
    volumeNode: object
    segmentationNode: object


@dataclass
class SubmitResult:
    case: Case
    job: Job | None
    message: str


class ASFDAModuleLogic(ScriptedLoadableModuleLogic):
    """The workflow without any GUI.

    Methods marked *network* block on the backend and touch neither Qt nor MRML (the widget runs them on
    worker threads); methods marked *scene* change the MRML scene and belong on the main thread.
    """

    def __init__(self, scene=None, cacheDir=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.sceneLogic = SceneLogic(self.scene, volumesLogic=_moduleLogic("volumes"))
        self.caseTable = CaseTableModel()
        self.cacheDir = pathlib.Path(cacheDir) if cacheDir else _defaultCacheDir()
        self.backendProcess: BackendProcessProtocol | None = None
        self.client: BackendClient | None = None
        self.info: BackendInfo | None = None
        self.sessionDir: pathlib.Path | None = None  # set for a backend this logic started

    def getParameterNode(self):
        return ASFDAModuleParameterNode(super().getParameterNode())

    def installLogic(self, confirm) -> InstallLogic:
        return InstallLogic(MODULE_DIR / "Resources" / "requirements.txt", confirm)

    # -- backend -----------------------------------------------------------------------------------

    def startBackend(
        self,
        sessionDir,
        model=None,
        device: str = "auto",
        port: int = 0,
        dataFolder=None,
        python: str | None = None,
    ) -> BackendProcess:
        """Start ``asfda serve`` in the background; poll ``backendProcess.pollReady()`` or waitForBackend."""
        if sessionDir is None:
            raise ValueError(
                "choose a session folder for the backend (it holds the cases and model versions)"
            )
        self.stopBackend()
        self.sessionDir = pathlib.Path(sessionDir)
        launch = BackendLaunch(
            sessionDir=self.sessionDir,
            model=pathlib.Path(model) if model else None,
            device=device,
            port=port,
            python=python,
            enginePath=MODULE_DIR,
            allowDirs=[pathlib.Path(dataFolder)] if dataFolder else [],
            environment=_backendEnvironment(),
        )
        self.backendProcess = BackendProcess(launch, logFile=self.cacheDir / "backend.log")
        self.backendProcess.start()
        return self.backendProcess

    def waitForBackend(self, timeout: float = 120.0) -> BackendInfo:
        """Blocking: wait until the started backend is ready and connect to it (scripts and tests)."""
        self.connectToServer(self.backendProcess.waitUntilReady(timeout))
        return self.fetchInfo()

    def connectToServer(self, serverInfo: ServerInfo) -> BackendClient:
        self.client = BackendClient(serverInfo.url, serverInfo.token)
        return self.client

    def connect(self, url: str, token: str | None) -> BackendClient:
        """Use a backend that runs elsewhere (a GPU server); volumes then travel by upload."""
        if not url:
            raise ValueError("enter the backend's URL, e.g. http://gpu-server:8000")
        self.stopBackend()
        self.sessionDir = None
        self.client = BackendClient(url, token)
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
        """*network*"""
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
                cases = self._client().addCaseFile(export.path)
                case = _caseOfFile(cases, export.path)
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

    def fetchRanking(self, attempts: int = 3, pause: float = 2.0) -> Ranking:
        """*network*: may take a while: the backend scores the pool first when the model changed.

        The backend answers 409 when the pool changed during scoring or a scoring job still runs: asking
        again shortly after is the remedy it names, so do that a few times before giving up.
        """
        for attempt in range(attempts):
            try:
                return self._client().ranking()
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
        """*network*: the next case for this annotator (or the given one), its volume and the prediction."""
        client = self._client()
        case = client.nextCase(annotator) if caseId is None else self._knownCase(caseId)
        info = self.info or self.fetchInfo()
        folder = self.cacheDir / "cases" / _safeName(case.id)
        imagePath = None
        if case.id not in caseIdsInScene:
            imagePath = client.downloadImage(case.id, folder / "image.nii.gz")
        predictionPath = client.downloadPrediction(
            case.id, folder / f"prediction-{_safeName(info.modelVersion or 'model')}.nii.gz"
        )
        return CaseFiles(case, imagePath, predictionPath, info.labels, info.modelVersion)

    def loadCase(self, caseFiles: CaseFiles) -> AnnotationCase:
        """*scene*: the case's volume and a segmentation made from the prediction, ready to correct.

        A segmentation already in the scene for this case is kept: it may hold corrections not yet saved.
        """
        case = caseFiles.case
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
        self.sceneLogic.prepareSegmentEditor(segmentation, volume)
        return AnnotationCase(case, volume, segmentation)

    # -- save mask and fine-tune -------------------------------------------------------------------

    def exportCorrection(self, caseId: str, segmentationNode, volumeNode) -> pathlib.Path:
        """*scene*: the corrected segmentation as a label map in the case's geometry (and a .seg.nrrd)."""
        folder = self.cacheDir / "cases" / _safeName(caseId)
        self.sceneLogic.saveSegmentationFile(segmentationNode, folder / "correction.seg.nrrd")
        return self.sceneLogic.writeLabelmapFile(segmentationNode, volumeNode, folder / "label.nii.gz")

    def submitCorrection(
        self, caseId: str, labelFile, steps: int | None = None, startRound: bool = True
    ) -> SubmitResult:
        """*network*: send the label map, then start a fine-tuning round (or learn that one is running)."""
        case = self._client().submitLabel(caseId, labelFile)
        if not startRound:
            return SubmitResult(case, None, f"Mask of {case.name} saved.")
        try:
            job = self._client().startFineTuning(steps)
        except BackendError as error:
            if error.status != HTTP_CONFLICT:
                raise
            return SubmitResult(
                case,
                None,
                f"Mask of {case.name} saved; a round is already running, so it "
                f"will be used in the next one ({error.detail}).",
            )
        verb = "queued" if job.state is JobState.QUEUED else "started"
        return SubmitResult(case, job, f"Mask of {case.name} saved; fine-tuning round {verb}.")

    def fetchJob(self, jobId: str) -> Job:
        """*network*"""
        return self._client().job(jobId)

    def cancelJob(self, jobId: str) -> Job:
        """*network*"""
        return self._client().cancelJob(jobId)

    def waitForJob(self, jobId: str, timeout: float = 600.0, interval: float = 0.5) -> Job:
        """Blocking: poll a job until it ends (scripts and tests; the widget polls with a timer)."""
        deadline = time.monotonic() + timeout
        job = self.fetchJob(jobId)
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(interval)
            job = self.fetchJob(jobId)
        return job

    # -- plots -------------------------------------------------------------------------------------

    def fetchMetrics(self) -> list[RoundMetrics]:
        """*network*"""
        return self._client().metrics()

    def updatePlots(self, metrics: list[RoundMetrics]):
        """*scene*: Dice per round, and DKD against ASD for the cases of the table."""
        return updateDicePlot(self.scene, metrics), updateScorePlot(self.scene, self.caseTable.cases)

    # -- helpers -----------------------------------------------------------------------------------

    def _client(self) -> BackendClient:
        if self.client is None:
            raise RuntimeError("no backend: start one, or connect to one by its URL")
        return self.client

    def _knownCase(self, caseId: str) -> Case:
        case = self.caseTable.case(caseId)
        if case is None:
            case = next((c for c in self._client().cases() if c.id == caseId), None)
        if case is None:
            raise KeyError(f"the backend has no case {caseId!r}")
        return case


def _caseOfFile(cases: list[Case], path: pathlib.Path) -> Case:
    """The case the backend made from a file (it answers with a list, one per file)."""
    resolved = str(path.resolve())
    match = next(
        (
            case
            for case in cases
            if case.sourcePath and str(pathlib.Path(case.sourcePath).resolve()) == resolved
        ),
        None,
    )
    if match is None and len(cases) == 1:
        match = cases[0]
    if match is None:
        raise RuntimeError(f"{path}: the backend did not say which case it made of this file")
    return match


def _moduleLogic(name: str):
    """A core module's logic (``slicer.modules.volumes.logic()``), or None where modules are not loaded."""
    module = getattr(getattr(slicer, "modules", None), name, None)
    return module.logic() if module is not None else None


def _backendEnvironment():
    """Slicer's startup environment, so PythonSlicer sets up its own paths; this one outside Slicer."""
    try:
        return slicer.util.startupEnvironment()
    except Exception:  # no application (tests, scripts with slicer-core)
        return dict(os.environ)


def _defaultCacheDir() -> pathlib.Path:
    app = getattr(slicer, "app", None)
    base = pathlib.Path(app.temporaryPath) if app is not None else pathlib.Path(tempfile.gettempdir())
    return base / "ASFDA"


def _pathOrNone(path):
    """The parameter node stores an unset path as '.'."""
    return None if path is None or str(path) in ("", ".") else pathlib.Path(path)


def _safeName(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


#
# ASFDAModuleTest
#


class ASFDAModuleTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test); needs no backend and no network."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PredictionToSegmentationAndBack()
        self.setUp()
        self.test_CaseTableHighlightsSuggestedCase()

    def test_PredictionToSegmentationAndBack(self):
        """A prediction becomes named segments, and they become a label map in the volume's geometry."""
        import numpy as np

        self.delayDisplay("Prediction to segmentation and back")
        logic = ASFDAModuleLogic(cacheDir=pathlib.Path(tempfile.mkdtemp()))
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "test volume")
        volume.SetSpacing(0.8, 1.2, 2.5)
        volume.SetOrigin(-20.0, 10.0, 5.0)
        slicer.util.updateVolumeFromArray(volume, np.zeros((12, 16, 20), dtype=np.int16))
        labels = {0: "background", 1: "liver", 2: "spleen"}
        prediction = np.zeros((12, 16, 20), dtype=np.uint8)
        prediction[2:6, 3:9, 4:12] = 1
        labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        labelNode.CopyOrientation(volume)
        slicer.util.updateVolumeFromArray(labelNode, prediction)
        predictionFile = logic.sceneLogic.writeVolume(labelNode, logic.cacheDir / "prediction.nii.gz")

        segmentation = logic.sceneLogic.segmentationFromFile(predictionFile, volume, labels, "test")
        names = [
            segmentation.GetSegmentation().GetNthSegment(i).GetName()
            for i in range(segmentation.GetSegmentation().GetNumberOfSegments())
        ]
        self.assertEqual(names, ["liver", "spleen"])

        labelFile = logic.sceneLogic.writeLabelmapFile(segmentation, volume, logic.cacheDir / "label.nii.gz")
        readBack = logic.sceneLogic.loadVolume(labelFile, "read back")
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(readBack), prediction)
        self.delayDisplay("Test passed")

    def test_CaseTableHighlightsSuggestedCase(self):
        from ASFDAModuleLib.BackendTypes import CaseStatus

        model = CaseTableModel()
        model.setCases(
            [
                Case("a", "A", CaseStatus.UNLABELLED, score=0.2, rank=2),
                Case("b", "B", CaseStatus.SUGGESTED, score=0.9, rank=1),
            ],
            nextCaseId="b",
        )
        self.assertEqual([row.caseId for row in model.rows()], ["b", "a"])
        self.assertTrue(model.rows()[0].suggested)
        model.sortBy(CaseColumn.SCORE, ascending=True)
        self.assertEqual([row.caseId for row in model.rows()], ["a", "b"])
