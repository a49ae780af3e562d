"""The Widget's pool of cases and models: add scene volumes or a folder, remove a case, choose the query
strategy, list and activate model versions, show the plots.

A mixin of ``ASFDAModuleWidget`` (the counterpart of the Logic's ``PoolLogic``): it uses the Widget's ``ui``,
``logic``, parameter node and the helpers of ``WidgetMessages``; the slots are connected in ``setup``.
"""

import slicer

from . import WidgetViews as views
from .BackendTypes import Case
from .i18n import _
from .Paths import pathOrNone


class PoolActions:
    """Cases in and out of the pool, the query strategy, model versions and plots."""

    # -- cases -----------------------------------------------------------------------------------

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

    def _selectedCaseId(self):
        return views.selectedId(self.ui.casesTable)

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
