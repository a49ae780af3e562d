"""The Logic's annotation and training: serve a case, load it with its prediction, skip or flag it, save the
corrected mask (with its edit effort), run fine-tuning rounds, and bring a newer model's prediction to the
open case (never over the radiologist's edits without asking).

The radiologist never waits for the machine: the mask is copied out of the scene on the GUI thread
(``snapshotCorrection``), written and sent on a worker (``submitSnapshot``), and the next case comes at once
from the backend's current ranking while the round runs behind (``POST /next`` answers during a round).

A mixin of ``ASFDAModuleLogic`` (``ModuleLogic``), which holds the state it works on: ``sceneLogic``,
``caseTable``, ``cacheDir``, ``marks``, ``effort``, ``openCaseFiles``, and ``_client()``, ``_marks()`` and
``fetchInfo()``. *network* and *scene* mark the methods as in ``ModuleLogic``.
"""

from __future__ import annotations

import logging
import pathlib
import time

import numpy as np

from . import SegmentationEdits, VolumeFiles
from .BackendClient import HTTP_CONFLICT, BackendError
from .BackendTypes import Case, CaseStatus, Job, JobState
from .CaseMarks import CaseMark, nextUnmarkedCase
from .EditEffort import EditRecord, changedFraction, editDice
from .i18n import _
from .Paths import safeName
from .RoundOutcome import heldBack, heldBackNote, roundDoneMessage
from .SceneLogic import STARTING_FROM_ATTRIBUTE, ijkToRas
from .Settings import LeavePolicy
from .VolumeFiles import VolumeSnapshot
from .WorkflowTypes import AnnotationCase, CaseFiles, SubmitResult


class AnnotationLogic:
    """One case at a time: open it, correct the prediction, save the mask, train on what is saved."""

    # -- annotate ----------------------------------------------------------------------------------

    def fetchCaseFiles(self, annotator: str, caseIdsInScene: set, caseId: str | None = None) -> CaseFiles:
        """*network*: the next case for this annotator (or the given one), its volume and the prediction.

        Answers while a round runs: the case comes from the current ranking. The prediction carries the
        model version that made it (the backend names it; an older backend's is the active version), and
        both files are rewritten uncompressed here, so that loading them on the GUI thread is a plain read.
        """
        client = self._client()
        case = nextUnmarkedCase(client, self.marks, annotator) if caseId is None else self._knownCase(caseId)
        info = self.fetchInfo()
        folder = self.cacheDir / "cases" / safeName(case.id)
        imagePath = window = None
        if case.id not in caseIdsInScene:
            downloadedImage = client.downloadImage(case.id, folder / "image.nii.gz")
            imagePath, window = VolumeFiles.rewriteImageForLoading(downloadedImage)
        download = client.downloadStartingSegmentation(case.id, folder / "prediction.nii.gz")
        version = download.modelVersion or info.modelVersion
        predictionPath = download.path.replace(folder / f"prediction-{safeName(version or 'model')}.nii.gz")
        predictionPath = VolumeFiles.rewriteForLoading(predictionPath)
        round_ = info.round if version == info.modelVersion else None
        return CaseFiles(
            case,
            imagePath,
            predictionPath,
            info.labels,
            version,
            round_,
            window,
            download.source,
            download.startingFrom,
        )

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
            volume = self.sceneLogic.loadVolume(caseFiles.imagePath, case.name, caseFiles.window)
            self.sceneLogic.tagCase(volume, case.id)
        segmentation = self.sceneLogic.findCaseSegmentation(case.id)
        fromPrediction = segmentation is None
        if fromPrediction:
            segmentation = self._segmentationFromPrediction(caseFiles, volume)
        elif segmentation.GetDisplayNode() is not None:
            segmentation.GetDisplayNode().SetVisibility(True)
        self.sceneLogic.prepareSegmentEditor(segmentation, volume)
        self.openCaseFiles[case.id] = caseFiles
        # Kept in the session: a mask saved after a restart still gets its edit effort. A segmentation kept
        # from before (corrections in progress) keeps the time it was first opened.
        if self.opened is not None and (fromPrediction or self.opened.get(case.id) is None):
            self._rememberOpened(caseFiles)
        return AnnotationCase(case, volume, segmentation)

    def _segmentationFromPrediction(self, caseFiles: CaseFiles, volume):
        case = caseFiles.case
        segmentation = self.sceneLogic.segmentationFromFile(
            caseFiles.predictionPath, volume, caseFiles.labels, f"{case.name} segmentation"
        )
        self.sceneLogic.tagCase(segmentation, case.id, caseFiles.modelVersion)
        if caseFiles.startingFrom:
            segmentation.SetAttribute(STARTING_FROM_ATTRIBUTE, caseFiles.startingFrom)
        SegmentationEdits.watchEdits(self.scene, segmentation)
        return segmentation

    # -- a newer model's prediction for the open case ----------------------------------------------

    def newerModelVersion(self, caseId: str) -> str | None:
        """The active model version when the case's prediction came from another one (None otherwise).

        Uses the last ``fetchInfo``: the Widget asks for it when a round ends."""
        caseFiles = self.openCaseFiles.get(caseId)
        active = self.info.modelVersion if self.info is not None else None
        if caseFiles is None or active is None or caseFiles.modelVersion == active:
            return None
        return active

    def startingFrom(self, caseId: str) -> str | None:
        """What the open case's segmentation started from, in one line (None when the backend did not say)."""
        caseFiles = self.openCaseFiles.get(caseId)
        return caseFiles.startingFrom if caseFiles is not None else None

    def segmentationEdited(self, caseId: str) -> bool:
        """*scene*: whether the case's segmentation was edited since it was made from a prediction."""
        segmentation = self.sceneLogic.findCaseSegmentation(caseId)
        return segmentation is not None and SegmentationEdits.isEdited(segmentation)

    def fetchPrediction(self, caseId: str, annotator: str = "slicer") -> CaseFiles:
        """*network*: the active model's prediction of a case whose volume is in the scene."""
        return self.fetchCaseFiles(annotator, {caseId}, caseId)

    def updatePrediction(self, caseFiles: CaseFiles, replaceEdits: bool = False) -> AnnotationCase | None:
        """*scene*: the case's segmentation made anew from ``caseFiles``' (newer) prediction.

        None, and nothing changed, when the radiologist edited the segmentation and ``replaceEdits`` is
        False: the Widget asks before it passes True. Checked here, at the last moment, because an edit may
        come while the prediction downloads.
        """
        case = caseFiles.case
        volume = self.sceneLogic.findCaseVolume(case.id)
        if volume is None:
            raise RuntimeError(
                _("case {name}: its volume left the scene; open the case again").format(name=case.name)
            )
        old = self.sceneLogic.findCaseSegmentation(case.id)
        if old is not None and SegmentationEdits.isEdited(old) and not replaceEdits:
            return None
        segmentation = self._segmentationFromPrediction(caseFiles, volume)
        if old is not None:
            segmentation.SetName(old.GetName())
            self.sceneLogic.removeNode(old)
        self.sceneLogic.prepareSegmentEditor(segmentation, volume)
        self.openCaseFiles[case.id] = caseFiles
        if self.opened is not None:  # the edit effort is now measured against this prediction
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

    def snapshotCorrection(self, caseId: str, segmentationNode, volumeNode) -> VolumeSnapshot:
        """*scene*, fast: the corrected segmentation's label map in the case's geometry, copied for a worker.

        Only the label map is saved (the mask the backend trains on): a ``.seg.nrrd`` beside it, as before
        issue 21, cost the GUI thread 0.05-0.25 s even uncompressed, and nothing read it."""
        folder = self.cacheDir / "cases" / safeName(caseId)
        labelArray = self.sceneLogic.labelmapArray(segmentationNode, volumeNode)
        return VolumeSnapshot(labelArray, ijkToRas(volumeNode), folder / "label.nii.gz")

    def exportCorrection(self, caseId: str, segmentationNode, volumeNode) -> pathlib.Path:
        """*scene*, blocking (scripts): the corrected segmentation written as a label map."""
        return VolumeFiles.writeSnapshot(self.snapshotCorrection(caseId, segmentationNode, volumeNode))

    def measureEditEffort(self, caseId: str, labelFile) -> EditRecord | None:
        """Dice between the model's prediction of the case and the mask file about to be submitted."""
        return self.editEffortOf(caseId, VolumeFiles.readLabelArray(labelFile))

    def editEffortOf(self, caseId: str, corrected: np.ndarray) -> EditRecord | None:
        """*worker*: Dice between the model's prediction of the case and the corrected label array.

        None when there is nothing to compare (the case was not opened from a prediction in this session) or
        the two do not compare: the measure must never keep a mask from being saved.
        """
        caseFiles = self.openCaseFiles.get(caseId) or self._openedBefore(caseId)
        if caseFiles is None or not caseFiles.predictionPath.is_file():
            return None
        prediction = VolumeFiles.readLabelArray(caseFiles.predictionPath)
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

        The Widget splits this at the snapshot (scene) and ``submitSnapshot`` (worker); scripts call it whole.
        """
        snapshot = self.snapshotCorrection(caseId, segmentationNode, volumeNode)
        return self.submitSnapshot(caseId, snapshot, steps, train, acceptWorse)

    def submitSnapshot(
        self, caseId, snapshot: VolumeSnapshot, steps=None, train=True, acceptWorse=False
    ) -> SubmitResult:
        """*worker*: write the mask to disk first, then measure the edit effort, submit, start a round."""
        labelFile = VolumeFiles.writeSnapshot(snapshot)
        effort = self.editEffortOf(caseId, snapshot.array)
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
                "Mask of {name} saved; a round is already running, so it will be used in the next one, "
                "which starts when this one ends ({detail})."
            )
            return SubmitResult(
                case, None, message.format(name=case.name, detail=error.detail), effort, waitsForRound=True
            )
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
