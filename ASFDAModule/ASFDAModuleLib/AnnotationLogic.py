"""The Logic's annotation and training: serve a case, load it with its prediction, skip or flag it, save the
corrected mask (with its edit effort) and run fine-tuning rounds.

A mixin of ``ASFDAModuleLogic`` (``ModuleLogic``), which holds the state it works on: ``sceneLogic``,
``caseTable``, ``cacheDir``, ``marks``, ``effort``, ``openCaseFiles``, and ``_client()``, ``_marks()`` and
``fetchInfo()``. *network* and *scene* mark the methods as in ``ModuleLogic``.
"""

from __future__ import annotations

import logging
import pathlib
import time

from .BackendClient import HTTP_CONFLICT, BackendError
from .BackendTypes import Case, CaseStatus, Job, JobState
from .CaseMarks import CaseMark, nextUnmarkedCase
from .EditEffort import EditRecord, changedFraction, editDice
from .i18n import _
from .Paths import safeName
from .RoundOutcome import heldBack, heldBackNote, roundDoneMessage
from .Settings import LeavePolicy
from .WorkflowTypes import AnnotationCase, CaseFiles, SubmitResult


class AnnotationLogic:
    """One case at a time: open it, correct the prediction, save the mask, train on what is saved."""

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
                raise RuntimeError(
                    _("case {name}: its volume left the scene; open the case again").format(name=case.name)
                )
            volume = self.sceneLogic.loadVolume(caseFiles.imagePath, case.name)
            self.sceneLogic.tagCase(volume, case.id)
        segmentation = self.sceneLogic.findCaseSegmentation(case.id)
        fromPrediction = segmentation is None
        if fromPrediction:
            segmentation = self.sceneLogic.segmentationFromFile(
                caseFiles.predictionPath, volume, caseFiles.labels, f"{case.name} segmentation"
            )
            self.sceneLogic.tagCase(segmentation, case.id, caseFiles.modelVersion)
        elif segmentation.GetDisplayNode() is not None:
            segmentation.GetDisplayNode().SetVisibility(True)
        self.sceneLogic.prepareSegmentEditor(segmentation, volume)
        self.openCaseFiles[case.id] = caseFiles
        # Kept in the session: a mask saved after a restart still gets its edit effort. A segmentation kept
        # from before (corrections in progress) keeps the time it was first opened.
        if self.opened is not None and (fromPrediction or self.opened.get(case.id) is None):
            self._rememberOpened(caseFiles)
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
        caseFiles = self.openCaseFiles.get(caseId) or self._openedBefore(caseId)
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
        opened = self.opened.get(caseId) if self.opened is not None else None
        return EditRecord(
            caseId,
            caseFiles.case.name,
            caseFiles.modelVersion,
            caseFiles.round,
            editDice(prediction, corrected),
            changedFraction(prediction, corrected),
            round(time.time() - opened.opened, 1) if opened is not None else None,
        )

    def _rememberOpened(self, caseFiles: CaseFiles) -> None:
        case = caseFiles.case
        self.opened.add(case.id, case.name, caseFiles.predictionPath, caseFiles.modelVersion, caseFiles.round)

    def _openedBefore(self, caseId: str) -> CaseFiles | None:
        """The case as opened before the module restarted (kept in the session), or None."""
        opened = self.opened.get(caseId) if self.opened is not None else None
        if opened is None:
            return None
        case = Case(opened.caseId, opened.caseName, CaseStatus.SUGGESTED)
        prediction = pathlib.Path(opened.predictionPath)
        return CaseFiles(case, None, prediction, {}, opened.modelVersion, opened.round)

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

    def describeFinishedRound(self, job: Job) -> str:
        """The status line of a finished round: its new version, or which version the guard kept active and
        why (remembered in ``heldBackNote`` for the status lines after it, until a version is activated)."""
        active = self.info.modelVersion if self.info is not None else None
        metrics = job.result.get("metrics") or {}
        roundNumber = job.result.get("round")
        self.heldBackNote = heldBackNote(roundNumber, active, metrics) if heldBack(metrics) else ""
        return roundDoneMessage(job, active)

    def waitForJob(self, jobId: str, timeout: float = 600.0, interval: float = 0.5) -> Job:
        """Blocking: poll a job until it ends (scripts and tests; the widget polls with a timer)."""
        deadline = time.monotonic() + timeout
        job = self.fetchJob(jobId)
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(interval)
            job = self.fetchJob(jobId)
        return job

    def _knownCase(self, caseId: str) -> Case:
        case = self.caseTable.case(caseId)
        if case is None:
            case = next((c for c in self._client().cases() if c.id == caseId), None)
        if case is None:
            raise KeyError(_("the backend has no case {caseId!r}").format(caseId=caseId))
        return case
