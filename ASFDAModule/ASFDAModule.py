"""ASFDA: active source-free domain adaptation of a 3D segmentation model, driven from Slicer.

The backend (``asfda serve``) ranks unlabelled volumes by DKD and ASD; the radiologist corrects the model's
prediction of the suggested case in the Segment Editor embedded in this panel; the backend fine-tunes and the
scores refresh.

Template order: Module, ParameterNode (in ``ASFDAModuleLib.Parameters``), Widget (wiring only; what its
buttons do is in the ``ASFDAModuleLib`` mixins it is made of), Logic (no GUI, in
``ASFDAModuleLib.ModuleLogic``: scripts and tests call it), Test. torch, MONAI and the engine are never
imported here: they run in the backend process, and their dependencies are installed on first use.
"""

import threading

import qt
import slicer
import vtk
from ASFDAModuleLib import WidgetViews as views
from ASFDAModuleLib.AnnotationActions import AnnotationActions
from ASFDAModuleLib.BackendActions import BackendActions
from ASFDAModuleLib.BackendProcess import BackendState
from ASFDAModuleLib.BackendTypes import Case
from ASFDAModuleLib.BackgroundTasks import BackgroundTasks
from ASFDAModuleLib.CaseTable import CaseColumn, CaseTableModel
from ASFDAModuleLib.i18n import _, translate
from ASFDAModuleLib.JobFollowing import JobFollowing
from ASFDAModuleLib.ModuleLogic import ASFDAModuleLogic  # noqa: F401 - Slicer finds the Logic here
from ASFDAModuleLib.Parameters import ASFDAModuleParameterNode  # noqa: F401 - and the parameter node
from ASFDAModuleLib.Paths import pathText
from ASFDAModuleLib.PoolActions import PoolActions
from ASFDAModuleLib.PredictionUpdate import PredictionUpdate
from ASFDAModuleLib.SampleData import registerSampleData
from ASFDAModuleLib.Settings import ModuleSettings
from ASFDAModuleLib.WidgetMessages import WidgetMessages
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
# ASFDAModuleParameterNode: in ASFDAModuleLib.Parameters (the Logic makes it too)
#

#
# ASFDAModuleWidget
#


class ASFDAModuleWidget(
    BackendActions,
    PoolActions,
    AnnotationActions,
    JobFollowing,
    PredictionUpdate,
    WidgetMessages,
    ScriptedLoadableModuleWidget,
    VTKObservationMixin,
):
    """Wires the UI to the Logic; every backend call goes through background tasks polled by a timer.

    Thin on purpose: the tests run without Qt, so everything that can be decided without it is in the Logic.
    This class holds the wiring (setup, cleanup, parameter node, settings, drawing); what the buttons do is
    in its mixins: ``BackendActions`` (start, stop, connect, poll), ``PoolActions`` (cases, query strategy,
    model versions, plots), ``AnnotationActions`` (open, save, skip, flag), ``JobFollowing`` (the ranking's
    scoring job and fine-tuning rounds, with their timers), ``PredictionUpdate`` (a newer model's prediction
    of the open case) and ``WidgetMessages`` (status line, background calls and their errors).
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

    # -- cases table -----------------------------------------------------------------------------

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


#
# ASFDAModuleLogic: in ASFDAModuleLib.ModuleLogic (imported above, where Slicer finds it)
#

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
