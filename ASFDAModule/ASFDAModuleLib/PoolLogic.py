"""The Logic's pool and model requests: add and remove cases, rank the pool, model versions, the query
strategy, and the plots of the rounds.

A mixin of ``ASFDAModuleLogic`` (``ModuleLogic``), which holds the state it works on: ``scene``,
``sceneLogic``, ``caseTable``, ``cacheDir``, ``sessionDir``, ``marks``, ``effort``, and ``backendIsLocal``,
``_client()`` and ``fetchInfo()``. *network* and *scene* mark the methods as in ``ModuleLogic``.
"""

from __future__ import annotations

import pathlib
import time

import slicer

from . import VolumeFiles
from .BackendClient import HTTP_CONFLICT, HTTP_FORBIDDEN, HTTP_METHOD_NOT_ALLOWED, BackendError, caseOfFile
from .BackendTypes import (
    BackendInfo,
    Case,
    CaseStatus,
    JobKind,
    ModelVersion,
    QuerySettings,
    Ranking,
    RoundMetrics,
)
from .i18n import _
from .Plots import updateDicePlot, updateEditEffortPlot, updateScorePlot
from .SceneLogic import ijkToRas
from .VolumeFiles import VolumeSnapshot
from .WorkflowTypes import VolumeExport, VolumeOutcome

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def engineQueryStrategies() -> tuple[str, tuple[str, ...]] | None:
    """The engine's default query strategy (its ``QueryConfig``) and the strategies that draw their picks
    (plain dataclasses and enums: importing the config loads neither torch nor the rest of the engine); None
    without the engine beside the module."""
    try:
        from asfda.config import DRAWN_QUERIES, QueryConfig
    except ImportError:
        return None
    return QueryConfig().strategy.value, tuple(strategy.value for strategy in DRAWN_QUERIES)


class PoolLogic:
    """The pool of cases, its ranking and the model versions, as the backend keeps them."""

    # -- cases -------------------------------------------------------------------------------------

    def snapshotSceneVolumes(self, volumeNodes) -> list[VolumeSnapshot]:
        """*scene*, fast: copies of scene volumes, each with the file the backend will take it from."""
        folder = self.sessionDir / "imports" if self.backendIsLocal else self.cacheDir / "uploads"
        return [
            VolumeSnapshot(
                slicer.util.arrayFromVolume(node).copy(),
                ijkToRas(node),
                self.sceneLogic.sessionFileOf(node, folder),
                node.GetID(),
            )
            for node in volumeNodes
        ]

    def exportSceneVolumes(self, volumeNodes) -> list[VolumeExport]:
        """*scene*, blocking (scripts): write scene volumes where the backend can take them from."""
        return self.writeVolumeFiles(self.snapshotSceneVolumes(volumeNodes))

    def writeVolumeFiles(self, snapshots: list[VolumeSnapshot]) -> list[VolumeExport]:
        """*worker*: write the copies (compressed)."""
        return [VolumeExport(s.nodeId, VolumeFiles.writeSnapshot(s)) for s in snapshots]

    def addVolumeSnapshots(self, snapshots: list[VolumeSnapshot]) -> list[VolumeOutcome]:
        """*worker*: write the copies, then add them as cases (the Widget's "Add scene volumes"), each
        with its outcome."""
        return self.submitVolumeFiles(self.writeVolumeFiles(snapshots))

    def submitVolumeFiles(self, exports: list[VolumeExport]) -> list[VolumeOutcome]:
        """*network*: add the written volumes as cases (by path for a local backend, by upload otherwise).

        Each file has its own outcome: one the backend refuses does not stop the others, and its written copy
        is deleted (nothing in the session refers to it)."""
        outcomes = []
        for export in exports:
            try:
                if self.backendIsLocal:
                    case = caseOfFile(self._client().addCaseFile(export.path), export.path)
                else:
                    case = self._client().uploadCase(export.path)
            except BackendError as error:
                export.path.unlink(missing_ok=True)
                outcomes.append(VolumeOutcome(export, None, error.detail))
                continue
            outcomes.append(VolumeOutcome(export, case))
        return outcomes

    def tagSceneVolumes(self, outcomes: list[VolumeOutcome]) -> None:
        """*scene*: remember which case each added scene volume is, so it is never downloaded again."""
        for outcome in outcomes:
            node = self.scene.GetNodeByID(outcome.export.nodeId)
            if node is not None and outcome.case is not None:
                self.sceneLogic.tagCase(node, outcome.case.id)

    def describeAddedVolumes(self, outcomes: list[VolumeOutcome]) -> tuple[str, str]:
        """(status line, one line a refused file): what became of each volume."""
        refused = [outcome for outcome in outcomes if outcome.case is None]
        status = _("Added {added} of {total} volumes to the pool.").format(
            added=len(outcomes) - len(refused), total=len(outcomes)
        )
        details = "\n".join(
            _("{file}: refused: {reason}").format(file=outcome.fileName, reason=outcome.error)
            for outcome in refused
        )
        return status, details

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
        if self.opened is not None:
            self.opened.forget(caseId)
        return case

    def forgetRemovedCase(self, caseId: str) -> int:
        """*scene*: after ``removeCase``, untag the case's volume and segmentation (they stay in the scene),
        so nothing opens or saves them as that case; returns the nodes untagged."""
        self.openCaseFiles.pop(caseId, None)
        return self.sceneLogic.untagCase(caseId)

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
                raise TimeoutError(
                    _("the pool was not scored within {timeout:.0f} s ({message})").format(
                        timeout=timeout, message=ranking.job.message
                    )
                )
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
        self.heldBackNote = ""  # the user chose the active version
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

    def queryStrategyToolTip(self) -> str:
        """The strategy box's tooltip, naming the engine's real default (``asfda.config.QueryConfig``)."""
        strategies = engineQueryStrategies()
        if strategies is None:
            return _("How the next case is chosen; kept in the session.")
        default, drawn = strategies
        return _(
            "How the next case is chosen ({default} by default; random and the other baselines for "
            "comparison). Kept in the session. {drawn} draw the next case in proportion to its score, so "
            "it need not have the highest score."
        ).format(default=default, drawn=", ".join(drawn))

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
