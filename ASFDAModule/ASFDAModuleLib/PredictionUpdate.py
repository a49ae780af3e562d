"""The Widget's offer of a newer model's prediction for the open case.

When a round made a newer model than the one that predicted the open case, the status says so and the
'Update prediction' button is enabled; an edited segmentation is replaced only after the radiologist confirms
(asked again if the segmentation was edited while the prediction was on its way).

A mixin of ``ASFDAModuleWidget``.
"""

import slicer

from .i18n import _


class PredictionUpdate:
    """Offer, confirm and show a newer model's prediction of the open case."""

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
            self._setCaseStatus(
                _("Case {name} now shows the prediction of model {version}.").format(
                    name=annotation.case.name, version=caseFiles.modelVersion or "?"
                ),
                annotation.case.id,
            )
        self._offerPredictionUpdate()
