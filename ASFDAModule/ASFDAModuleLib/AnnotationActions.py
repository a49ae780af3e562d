"""The Widget's annotation steps: open the next (or a chosen) case with the model's prediction, save the
corrected mask and go on, skip or flag a case.

A mixin of ``ASFDAModuleWidget`` (the counterpart of the Logic's ``AnnotationLogic``): the mask is snapshotted
on the GUI thread and written, sent and trained on behind (``logic.submitSnapshot`` on a worker), so the next
case opens at once.
"""

import slicer

from . import WidgetViews as views
from .i18n import _
from .Settings import LeavePolicy


class AnnotationActions:
    """Open a case, save its mask and go on, skip or flag it."""

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
            if annotation.case.provisional:  # asked for before the pool's first scoring ended
                self._setCaseStatus(
                    _(
                        "Case {name} (model {version}, from a provisional ranking: the pool is still being "
                        "scored): correct it above, then Save."
                    ).format(name=annotation.case.name, version=caseFiles.modelVersion or "?"),
                    annotation.case.id,
                )
            else:
                self._setCaseStatus(
                    _("Case {name} (model {version}): correct it above, then Save.").format(
                        name=annotation.case.name, version=caseFiles.modelVersion or "?"
                    ),
                    annotation.case.id,
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

    def onMarkCase(self, flag: bool) -> None:
        caseId = self._parameterNode.currentCaseId
        if not caseId:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not mark the case.")):
            (self.logic.flagCase if flag else self.logic.skipCase)(caseId)
            self._showCases()  # the mark replaces "suggested" at once
            self.onAnnotateNext()
