"""ASFDA: active source-free domain adaptation of a 3D segmentation model, driven from Slicer.

The backend (``asfda serve``) ranks unlabelled volumes by DKD and ASD; the radiologist corrects the model's
prediction of the suggested case in the Segment Editor embedded in this panel; the backend fine-tunes and the
scores refresh.

Template order: Module, Widget (wiring only), Logic (no GUI, in ``ASFDAModuleLib.ModuleLogic``: scripts and
tests call it), Test. torch, MONAI and the engine are never imported here: they run in the backend process,
and their dependencies are installed on first use.
"""

import logging
import threading

import qt
import slicer
import vtk
from ASFDAModuleLib import WidgetViews as views
from ASFDAModuleLib.BackendClient import BackendUnreachableError
from ASFDAModuleLib.BackendProcess import BackendState
from ASFDAModuleLib.BackendTypes import BackendInfo, Case, Job, JobState, Ranking
from ASFDAModuleLib.BackgroundTasks import BackgroundTasks
from ASFDAModuleLib.CaseTable import CaseColumn, CaseTableModel
from ASFDAModuleLib.i18n import _, translate
from ASFDAModuleLib.ModuleLogic import ASFDAModuleLogic  # noqa: F401 - Slicer finds the Logic here
from ASFDAModuleLib.Parameters import ASFDAModuleParameterNode  # noqa: F401 - and the parameter node
from ASFDAModuleLib.Paths import pathOrNone, pathText
from ASFDAModuleLib.SampleData import registerSampleData
from ASFDAModuleLib.Settings import LeavePolicy, ModuleSettings
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

DOCUMENTATION_URL = "https://github.com/ASFDA/SlicerASFDA#readme"

#
# ASFDAModule
#


class ASFDAModule(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ASFDA")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "SegmentEditor"]
        self.parent.contributors = ["ASFDA maintainers (ASFDA organisation on GitHub)"]
        self.parent.helpText = (
            _(
                "Adapt a pretrained 3D segmentation model to your own scans with as few corrections as "
                "possible. The backend ranks the unlabelled volumes by knowledge divergence (DKD) and "
                "segmentation difficulty (ASD); correct the model's prediction of the suggested case, save "
                "it, and the model is fine-tuned for the next one."
            )
            + f'<p>{_("Documentation:")} <a href="{DOCUMENTATION_URL}">{DOCUMENTATION_URL}</a></p>'
        )
        self.parent.acknowledgementText = _(
            'Method after Yang, Marcus and Sotiras, "Adapting Medical Vision Foundation Models for '
            "Volumetric Medical Image Segmentation via Active Learning and Selective Semi-supervised "
            "Fine-tuning\" (arXiv 2509.10784), in this project's own formulation."
        )
        # Sample data registers once the application has started (SampleData is a scripted module too).
        app = getattr(slicer, "app", None)
        if app is not None:
            app.connect("startupCompleted()", registerSampleData)


#
# ASFDAModuleWidget
#


class ASFDAModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the UI to the Logic; every backend call goes through background tasks polled by a timer.

    Thin on purpose: the tests run without Qt, so everything that can be decided without it is in the Logic.
    """

    POLL_INTERVAL_MS = 100
    JOB_INTERVAL_MS = 1000

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobId = None
        self._scoringJobId = None
        self._roundPending = False  # a mask came while a round ran: train again when it ends

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ASFDAModule.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = ASFDAModuleLogic()
        self.ui.strategyComboBox.toolTip = self.logic.queryStrategyToolTip()
        self.settings = ModuleSettings()
        self.tasks = BackgroundTasks()
        self.pollTimer = self._timer(self.POLL_INTERVAL_MS, self.onPoll)
        self.pollTimer.start()
        self.jobTimer = self._timer(self.JOB_INTERVAL_MS, self.onJobTimer)
        self.scoringTimer = self._timer(self.JOB_INTERVAL_MS, self.onScoringTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._connectApplication()

        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.sceneLogic.segmentEditorNode())
        self.ui.modelPathLineEdit.nameFilters = [_("TorchScript model (*.ts *.torchscript *.pt *.pth)")]
        for lineEdit, name in self._pathFields():
            lineEdit.currentPathChanged.connect(lambda path, name=name: self.onPathChanged(name, path))
        self.ui.modelFolderButton.clicked.connect(self.onChooseModelFolder)
        self.ui.deviceComboBox.currentTextChanged.connect(lambda text: self.settings.save(device=text))
        self.ui.backendUrlLineEdit.editingFinished.connect(
            lambda: self.settings.save(backendUrl=self.ui.backendUrlLineEdit.text)
        )
        connections = {
            self.ui.startBackendButton: self.onStartBackend,
            self.ui.stopBackendButton: self.onStopBackend,
            self.ui.connectButton: self.onConnect,
            self.ui.addSceneVolumesButton: self.onAddSceneVolumes,
            self.ui.addFolderButton: self.onAddFolder,
            self.ui.refreshButton: self.onRefresh,
            self.ui.cancelScoringButton: self.onCancelScoring,
            self.ui.removeCaseButton: self.onRemoveCase,
            self.ui.annotateNextButton: self.onAnnotateNext,
            self.ui.saveAndNextButton: lambda: self.onSave(train=True),
            self.ui.saveWithoutTrainingButton: lambda: self.onSave(train=False),
            self.ui.trainButton: self.onTrain,
            self.ui.skipButton: lambda: self.onMarkCase(flag=False),
            self.ui.flagButton: lambda: self.onMarkCase(flag=True),
            self.ui.cancelRoundButton: self.onCancelRound,
            self.ui.updatePredictionButton: self.onUpdatePrediction,
            self.ui.refreshModelsButton: self.onRefreshModels,
            self.ui.activateVersionButton: self.onActivateVersion,
            self.ui.showPlotsButton: self.onShowPlots,
        }
        for button, slot in connections.items():
            button.clicked.connect(slot)
        self.ui.strategyComboBox.activated.connect(self.onStrategyChosen)  # the user's choice only
        self.ui.plotChartSelector.currentNodeChanged.connect(self.onPlotChartSelected)
        self.ui.casesTable.horizontalHeader().sectionClicked.connect(self.onSortColumn)
        self.ui.casesTable.cellDoubleClicked.connect(self.onCaseDoubleClicked)

        views.setUpTable(self.ui.casesTable, [column.title for column in CaseTableModel.columns])
        header = self.ui.casesTable.horizontalHeader()
        header.setSortIndicatorShown(True)  # sorting is the model's (unscored cases last), not Qt's
        header.setSortIndicator(CaseTableModel.columns.index(CaseColumn.RANK), qt.Qt.AscendingOrder)
        views.setUpTable(self.ui.modelVersionsTable, [_("Version"), _("Round"), _("Metrics"), _("Active")])
        self.initializeParameterNode()
        self._restoreSettings()
        self._updateButtons()

    def cleanup(self) -> None:
        """Slicer closes or the module is reloaded: stop timers, workers and the backend with its children.

        The backend takes a moment to stop (0.4 s measured): a thread waits for it, not the GUI. The thread is
        no daemon, so Python still waits for it before it exits and no backend outlives Slicer."""
        for timer in (self.pollTimer, self.jobTimer, self.scoringTimer):
            timer.stop()
        self.tasks.shutdown()
        threading.Thread(target=self.logic.stopBackend, name="ASFDA backend stop").start()
        self._disconnectApplication()
        self.setParameterNode(None)
        self.removeObservers()

    def _connectApplication(self) -> None:
        slicer.app.aboutToQuit.connect(self.logic.stopBackend)

    def _disconnectApplication(self) -> None:
        # Every reload makes a new Widget: a connection left behind would call a dead one's logic on quit.
        slicer.app.aboutToQuit.disconnect(self.logic.stopBackend)

    def enter(self) -> None:
        self.initializeParameterNode()
        self.ui.segmentEditorWidget.installKeyboardShortcuts()

    def exit(self) -> None:
        self.ui.segmentEditorWidget.setActiveEffect(None)
        self.ui.segmentEditorWidget.uninstallKeyboardShortcuts()
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        # The scene's Segment Editor node went with it: give the embedded editor the new one.
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.sceneLogic.segmentEditorNode())
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind the GUI to the parameter node, and refresh the buttons whenever the node changes."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(
                self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameters
            )
            self._updateButtons()

    def _onParameters(self, caller=None, event=None) -> None:
        self._updateButtons()

    # -- settings and paths ------------------------------------------------------------------------

    def _pathFields(self):
        return [
            (self.ui.sessionFolderPathLineEdit, "sessionFolder"),
            (self.ui.modelPathLineEdit, "modelPath"),
            (self.ui.dataFolderPathLineEdit, "dataFolder"),
        ]

    def _restoreSettings(self) -> None:
        """QSettings first (they survive a restart), then the scene's parameter node where it has a value."""
        remembered = self.settings.load()
        p = self._parameterNode
        for name in ("sessionFolder", "modelPath", "backendUrl"):
            if not getattr(p, name) and remembered.get(name):
                setattr(p, name, remembered[name])
        if remembered.get("device") in ("auto", "cuda", "cpu"):
            p.device = remembered["device"]
        for lineEdit, name in self._pathFields():
            lineEdit.currentPath = pathText(getattr(p, name))

    def onPathChanged(self, name: str, path: str) -> None:
        text = pathText(path)
        setattr(self._parameterNode, name, text)
        if name in ("sessionFolder", "modelPath"):
            self.settings.save(**{name: text})

    def onChooseModelFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(
            None, _("Choose the model folder"), self.ui.modelPathLineEdit.currentPath
        )
        if folder:
            self.ui.modelPathLineEdit.currentPath = folder

    # -- backend -----------------------------------------------------------------------------------

    def onStartBackend(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the ASFDA backend."), waitCursor=True):
            if not self.logic.installLogic(slicer.util.confirmOkCancelDisplay).ensureDependencies():
                return
            p = self._parameterNode
            self.logic.startBackend(p.sessionFolder, p.modelPath, p.device, dataFolder=p.dataFolder)
            self.ui.backendLog.clear()
            self._setStatus(_("Backend starting..."))
        self._updateButtons()

    def onStopBackend(self) -> None:
        # Stopping waits for the backend to finish what it writes: off the GUI thread.
        self._setStatus(_("Stopping the backend..."))
        self._runTask("stop backend", self.logic.stopBackend, self._onBackendStopped, _("Stopping failed."))

    def _onBackendStopped(self, _result) -> None:
        self._setStatus(_("Backend stopped."))
        self._updateButtons()

    def onConnect(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to connect to the backend.")):
            self.logic.connect(self._parameterNode.backendUrl, self.ui.tokenLineEdit.text or None)
            self._fetchInfo()

    def _fetchInfo(self) -> None:
        self._runTask("info", self.logic.fetchInfo, self._onBackendInfo, _("Cannot reach the backend."))

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
                self._fetchInfo()
        elif state is BackendState.EXITED:
            wasReady = process.serverInfo is not None
            self.logic.forgetBackend()
            self._stopFollowingJobs()
            what = _("stopped unexpectedly") if wasReady else _("did not start")
            message = _("The ASFDA backend {what} (exit code {code}).").format(
                what=what, code=process.returnCode
            )
            self._setStatus(message)
            slicer.util.errorDisplay(
                message, detailedText=_("Last lines of its log:") + "\n" + process.logTail()
            )

    def _onBackendInfo(self, info: BackendInfo) -> None:
        self._setModelStatus(info.summary)
        self._updateButtons()
        self._offerPredictionUpdate()
        self.onRefresh()
        self.onRefreshModels()
        self._runTask(
            "query",
            self.logic.fetchQuerySettings,
            self._showQuerySettings,
            _("No query settings."),
            quiet=True,
        )

    # -- cases -------------------------------------------------------------------------------------

    def onAddSceneVolumes(self) -> None:
        nodes = self.ui.sceneVolumesSelector.checkedNodes()
        if not nodes:
            slicer.util.warningDisplay(_("Check the volumes to add in the list first."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to read the volumes from the scene.")):
            snapshots = self.logic.snapshotSceneVolumes(nodes)  # copies: the files are written behind
            self._runTask(
                "add volumes",
                self.logic.addVolumeSnapshots,
                self._onVolumesAdded,
                _("The volumes were not added to the session."),
                snapshots,
            )

    def _onVolumesAdded(self, outcomes) -> None:
        self.logic.tagSceneVolumes(outcomes)
        self.onRefresh()
        status, refused = self.logic.describeAddedVolumes(outcomes)
        self._setStatus(status)
        if refused:
            slicer.util.warningDisplay(status + "\n\n" + _("The backend refused:") + "\n" + refused)

    def onAddFolder(self) -> None:
        folder = pathOrNone(self._parameterNode.dataFolder)
        if folder is None:
            slicer.util.warningDisplay(_("Choose the folder of volumes first."))
            return
        self._runTask(
            "add folder",
            self.logic.addFolder,
            lambda cases: self.onRefresh(),
            _("The backend did not add the volumes of {folder}.").format(folder=folder),
            folder,
        )

    def onRefresh(self, quiet: bool = False) -> None:
        """Ask for the ranking without waiting: while the pool is scored, the scoring timer asks again."""
        if self.logic.client is not None:
            self._runTask(
                "ranking",
                self.logic.requestRanking,
                self._onRanking,
                _("Failed to get the ranking."),
                quiet=quiet,
                onError=self._onScoringLost if quiet and self._scoringJobId is not None else None,
            )

    def onScoringTimer(self) -> None:
        if self._scoringJobId is not None:
            self.onRefresh(quiet=True)

    def _onScoringLost(self, error) -> None:
        """While the scoring timer asks every second: a backend that no longer answers ends the following."""
        if not isinstance(error, BackendUnreachableError):
            logging.warning("ASFDA: %s %s", _("Failed to get the ranking."), error)
            return
        self._stopFollowingJobs()
        self._setStatus(_("Lost track of the scoring ({error}).").format(error=error), level=logging.WARNING)

    def _onRanking(self, ranking: Ranking) -> None:
        self.logic.applyRanking(ranking)
        self._showCases()
        if not ranking.complete and ranking.job is not None:
            self._scoringJobId = ranking.job.id
            views.showJob(self.ui.scoringProgressBar, ranking.job)
            self.scoringTimer.start()
            self._setStatus(_("Scoring the pool: {message}").format(message=ranking.job.message or "..."))
        else:
            self._scoringJobId = None
            self.scoringTimer.stop()
            self.ui.scoringProgressBar.setValue(100)
            self.ui.scoringProgressBar.setFormat(_("pool scored"))
            self._setModelStatus(
                _("Model version {version}, round {round}: {summary}.").format(
                    version=ranking.modelVersion or "?",
                    round=ranking.round or 0,
                    summary=self._casesSummary(),
                )
            )
        self._updateButtons()

    def onCancelScoring(self) -> None:
        if self._scoringJobId is not None:
            self.scoringTimer.stop()
            self._runTask(
                "cancel scoring",
                self.logic.cancelJob,
                lambda job: self._setStatus(_("Scoring {state}.").format(state=job.state.value)),
                _("Could not cancel the scoring."),
                self._scoringJobId,
            )
            self._scoringJobId = None
            self._updateButtons()

    def onRemoveCase(self) -> None:
        caseId = self._selectedCaseId()
        if caseId is None:
            slicer.util.warningDisplay(_("Select the case to remove in the table first."))
            return
        case = self.logic.caseTable.case(caseId)
        if slicer.util.confirmOkCancelDisplay(_("Remove case {name} from the pool?").format(name=case.name)):
            failure = _("The case was not removed.")
            self._runTask("remove case", self.logic.removeCase, self._onCaseRemoved, failure, caseId)

    def _onCaseRemoved(self, case: Case) -> None:
        self.logic.forgetRemovedCase(case.id)
        if self._parameterNode.currentCaseId == case.id:
            self._parameterNode.currentCaseId = ""  # nothing left to save it as
        self.onRefresh()

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

    def _selectedCaseId(self):
        return views.selectedId(self.ui.casesTable)

    # -- annotate ----------------------------------------------------------------------------------

    def onAnnotateNext(self) -> None:
        self._openCase(None)

    def _openCase(self, caseId) -> None:
        self._setStatus(_("Loading the case and the model's prediction..."))
        self._runTask(
            "open case",
            self.logic.fetchCaseFiles,
            self._onCaseFiles,
            _("Failed to load the case."),
            self._parameterNode.annotatorName or "slicer",
            self.logic.caseIdsInScene(),
            caseId,
        )

    def _leavePolicy(self) -> LeavePolicy:
        """Asked once, then remembered: what happens to the previous case when the next one opens."""
        if self.settings.leavePolicy is LeavePolicy.ASK:
            self.settings.leavePolicy = views.askLeavePolicy(slicer.util.mainWindow())
        return self.settings.leavePolicy

    def _onCaseFiles(self, caseFiles) -> None:
        p = self._parameterNode
        leave = self._leavePolicy() if p.currentCaseId else LeavePolicy.KEEP
        with slicer.util.tryWithErrorDisplay(_("Failed to show the case."), waitCursor=True):
            annotation = self.logic.loadCase(caseFiles, p.currentCaseId, leave)
            p.currentCaseId = annotation.case.id
            p.currentVolume = annotation.volumeNode
            p.currentSegmentation = annotation.segmentationNode
            slicer.util.setSliceViewerLayers(background=annotation.volumeNode, fit=True)
            sceneLogic = self.logic.sceneLogic
            sceneLogic.jumpSlicesTo(sceneLogic.focusPoint(annotation.segmentationNode, annotation.volumeNode))
            self._setStatus(
                _("Case {name} (model {version}): correct it above, then Save.").format(
                    name=annotation.case.name, version=caseFiles.modelVersion or "?"
                )
            )
        self._updateButtons()
        self._offerPredictionUpdate()  # a round may have ended while the case was on its way

    def onSave(self, train: bool) -> None:
        p = self._parameterNode
        if not p.currentCaseId or p.currentSegmentation is None or p.currentVolume is None:
            slicer.util.warningDisplay(_("Open a case with 'Next case' first."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to save the mask.")):
            # A copy of the mask; a worker writes it to disk first, then sends it and starts the round.
            snapshot = self.logic.snapshotCorrection(p.currentCaseId, p.currentSegmentation, p.currentVolume)
            self._runTask(
                "submit",
                self.logic.submitSnapshot,
                self._onSubmitted,
                _("The mask was not saved."),
                p.currentCaseId,
                snapshot,
                p.fineTuneSteps or None,
                train,
                p.acceptWorseRounds,
            )
            self._setStatus(_("Saving the mask..."))

    def _onSubmitted(self, result) -> None:
        """The mask is saved: the next case opens at once from the current ranking, the round runs behind."""
        self._setStatus(result.message)
        if result.job is not None:
            self._followJob(result.job)
        self._roundPending = self._roundPending or result.waitsForRound
        self.onRefresh()
        self.onAnnotateNext()

    def onTrain(self) -> None:
        self._runTask(
            "train",
            self.logic.startRound,
            self._followJob,
            _("Could not start a round."),
            self._parameterNode.fineTuneSteps or None,
            self._parameterNode.acceptWorseRounds,
        )

    def onMarkCase(self, flag: bool) -> None:
        caseId = self._parameterNode.currentCaseId
        if not caseId:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not mark the case.")):
            (self.logic.flagCase if flag else self.logic.skipCase)(caseId)
            self._showCases()  # the mark replaces "suggested" at once
            self.onAnnotateNext()

    # -- fine-tuning rounds ------------------------------------------------------------------------

    def _followJob(self, job: Job) -> None:
        self._jobId = job.id
        views.showJob(self.ui.roundProgressBar, job)
        self.jobTimer.start()
        self._updateButtons()

    def onJobTimer(self) -> None:
        if self._jobId is not None:
            self._runTask(
                "job",
                self.logic.fetchJob,
                self._onJob,
                _("Lost track of the fine-tuning round."),
                self._jobId,
                quiet=True,
                onError=self._onJobLost,
            )

    def _onJobLost(self, error) -> None:
        """The backend no longer answers about the round (it died, or another one took its place): stop
        asking every second, free the round's controls, and say so once."""
        self._stopFollowingJobs()
        message = _("Lost track of the fine-tuning round ({error}); Model versions shows what it made.")
        self._setStatus(message.format(error=error), level=logging.WARNING)

    def _stopFollowingJobs(self) -> None:
        self.jobTimer.stop()
        self.scoringTimer.stop()
        followed = [(self._jobId, self.ui.roundProgressBar), (self._scoringJobId, self.ui.scoringProgressBar)]
        for jobId, bar in followed:
            if jobId is not None:
                bar.setValue(0)
                bar.setFormat(_("not followed"))
        self._jobId = self._scoringJobId = None
        self._roundPending = False  # the backend is gone: the next Save and next or Train starts a round
        self._updateButtons()

    def _onJob(self, job: Job) -> None:
        views.showJob(self.ui.roundProgressBar, job)
        if not job.state.finished:
            return
        self.jobTimer.stop()
        self._jobId = None
        self._updateButtons()
        if job.state is JobState.DONE:
            self._setStatus(self.logic.describeFinishedRound(job))
            # The new version: status, the ranking (its rescoring follows), model versions, and the offer
            # to update the open case's prediction.
            self._fetchInfo()
            if self._roundPending:  # masks saved during this round
                self._roundPending = False
                self.onTrain()
        else:
            self._roundPending = False  # cancelled or failed: the next Save and next or Train starts one
            self._setStatus(_("Round {state}: {message}").format(state=job.state.value, message=job.message))

    def onCancelRound(self) -> None:
        if self._jobId is not None:
            self._runTask(
                "cancel", self.logic.cancelJob, self._onJob, _("Could not cancel the round."), self._jobId
            )

    # -- a newer model's prediction for the open case ---------------------------------------------

    def _offerPredictionUpdate(self) -> None:
        """When the open case's prediction came from an older model, say so and enable the update button."""
        caseId = self._parameterNode.currentCaseId if self._parameterNode else ""
        version = self.logic.newerModelVersion(caseId) if caseId and self.logic.client else None
        self.ui.updatePredictionButton.enabled = version is not None
        if version is None:
            return
        if self.logic.segmentationEdited(caseId):
            message = _(
                "Model {version} is ready. You edited this case, so its prediction replaces your edits only "
                "if you confirm: 'Update prediction'."
            )
        else:
            message = _("Model {version} is ready: 'Update prediction' shows its prediction of this case.")
        self._setStatus(message.format(version=version))

    def onUpdatePrediction(self) -> None:
        caseId = self._parameterNode.currentCaseId
        if not caseId:
            return
        replaceEdits = self.logic.segmentationEdited(caseId)
        if replaceEdits and not self._confirmReplacingEdits():
            return
        self._setStatus(_("Loading the new model's prediction..."))
        self._runTask(
            "update prediction",
            self.logic.fetchPrediction,
            lambda caseFiles: self._onUpdatedPrediction(caseFiles, replaceEdits),
            _("Failed to load the new prediction."),
            caseId,
            self._parameterNode.annotatorName or "slicer",
        )

    def _confirmReplacingEdits(self) -> bool:
        return slicer.util.confirmOkCancelDisplay(
            _("You edited this case's segmentation. Replace your edits with the new model's prediction?")
        )

    def _onUpdatedPrediction(self, caseFiles, replaceEdits: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to show the new prediction.")):
            annotation = self.logic.updatePrediction(caseFiles, replaceEdits)
            if annotation is None:  # edited while the prediction was on its way: ask now
                if not self._confirmReplacingEdits():
                    self._offerPredictionUpdate()
                    return
                annotation = self.logic.updatePrediction(caseFiles, replaceEdits=True)
            p = self._parameterNode
            if p.currentCaseId == annotation.case.id:
                p.currentSegmentation = annotation.segmentationNode
            self._setStatus(
                _("Case {name} now shows the prediction of model {version}.").format(
                    name=annotation.case.name, version=caseFiles.modelVersion or "?"
                )
            )
        self._offerPredictionUpdate()

    # -- query strategy ----------------------------------------------------------------------------

    def _showQuerySettings(self, settings) -> None:
        combo = self.ui.strategyComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for name in settings.strategies:
            combo.addItem(name)
        combo.currentText = settings.strategy
        combo.blockSignals(wasBlocked)

    def onStrategyChosen(self, _index=None) -> None:
        self._runTask(
            "strategy",
            self.logic.setQueryStrategy,
            self._onStrategySet,
            _("Could not change the query strategy."),
            self.ui.strategyComboBox.currentText,
        )

    def _onStrategySet(self, settings) -> None:
        self._showQuerySettings(settings)
        self._setStatus(_("Cases are now ranked by {strategy}.").format(strategy=settings.strategy))
        self.onRefresh(quiet=True)

    # -- model versions and plots ------------------------------------------------------------------

    def onRefreshModels(self) -> None:
        self._runTask(
            "models",
            self.logic.fetchModelVersions,
            self._showModelVersions,
            _("Failed to get the model versions."),
            quiet=True,
        )

    def _showModelVersions(self, versions) -> None:
        views.showModelVersions(self.ui.modelVersionsTable, versions)

    def onActivateVersion(self) -> None:
        version = views.selectedId(self.ui.modelVersionsTable)
        if version is None:
            slicer.util.warningDisplay(_("Select a model version first."))
            return
        self._runTask(
            "activate",
            self.logic.activateModelVersion,
            self._onBackendInfo,
            _("Could not activate the version."),
            version,
        )

    def onShowPlots(self) -> None:
        self._runTask("metrics", self.logic.fetchMetrics, self._onMetrics, _("Failed to get the metrics."))

    def _onMetrics(self, metrics) -> None:
        diceChart, _scores = self.logic.updatePlots(metrics)
        effortChart = self.logic.updateEditEffortPlot()
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
        if self.ui.plotChartSelector.currentNode() is None:
            self.ui.plotChartSelector.setCurrentNode(
                effortChart if self.logic.effort and self.logic.effort.records() else diceChart
            )
        self.onPlotChartSelected(self.ui.plotChartSelector.currentNode())

    def onPlotChartSelected(self, chartNode) -> None:
        if chartNode is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chartNode)

    # -- drawing -----------------------------------------------------------------------------------

    def _timer(self, interval: int, slot):
        timer = qt.QTimer()
        timer.setInterval(interval)
        timer.timeout.connect(slot)
        return timer

    def _showCases(self) -> None:
        views.showCases(self.ui.casesTable, self.logic.caseTable, self.logic.marks)
        views.showLabelledProgress(self.ui.labelledProgressBar, *self.logic.progress())
        self.ui.casesSummaryLabel.text = self._casesSummary()

    def _casesSummary(self) -> str:
        marks = self.logic.marks.labels() if self.logic.marks is not None else None
        return self.logic.caseTable.statusSummary(marks)

    def _updateButtons(self) -> None:
        process = self.logic.backendProcess
        running = process is not None and process.state in (BackendState.STARTING, BackendState.READY)
        connected = self.logic.client is not None
        hasCase = connected and bool(self._parameterNode and self._parameterNode.currentCaseId)
        self.ui.startBackendButton.enabled = not running
        self.ui.stopBackendButton.enabled = running
        for button in (
            self.ui.addSceneVolumesButton,
            self.ui.addFolderButton,
            self.ui.refreshButton,
            self.ui.annotateNextButton,
            self.ui.showPlotsButton,
            self.ui.trainButton,
            self.ui.removeCaseButton,
            self.ui.refreshModelsButton,
            self.ui.activateVersionButton,
        ):
            button.enabled = connected
        for button in (
            self.ui.saveAndNextButton,
            self.ui.saveWithoutTrainingButton,
            self.ui.skipButton,
            self.ui.flagButton,
        ):
            button.enabled = hasCase
        self.ui.cancelRoundButton.enabled = self._jobId is not None
        caseId = self._parameterNode.currentCaseId if self._parameterNode else ""
        self.ui.updatePredictionButton.enabled = hasCase and self.logic.newerModelVersion(caseId) is not None
        self.ui.cancelScoringButton.enabled = self._scoringJobId is not None

    def _setStatus(self, text: str, level: int = logging.INFO) -> None:
        self.ui.statusLabel.text = text
        logging.log(level, "ASFDA: %s", text)

    def _setModelStatus(self, text: str) -> None:
        """A status about the model, with why the active version stayed active if the guard held a round."""
        note = self.logic.heldBackNote
        self._setStatus(f"{text.rstrip('.')}. {note}" if note else text)

    def _runTask(self, name, function, onDone, failure: str, *args, quiet=False, onError=None) -> None:
        def reportError(error):
            self._updateButtons()
            if quiet:
                logging.warning("ASFDA: %s %s", failure, error)
            else:
                slicer.util.errorDisplay(f"{failure}\n\n{error}")

        submitted = self.tasks.submit(name, function, *args, onDone=onDone, onError=onError or reportError)
        if not submitted and not quiet:
            self._setStatus(_("Still busy with '{name}'; wait for it to finish.").format(name=name))


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
        import pathlib
        import tempfile

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
