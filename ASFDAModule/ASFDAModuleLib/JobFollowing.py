"""The Widget's following of the backend's jobs: a fine-tuning round and the scoring of the pool, each
asked about every second by its timer (``jobTimer``, ``scoringTimer``, made in the Widget's ``setup``) until
it ends, is cancelled or the backend no longer answers.

A mixin of ``ASFDAModuleWidget``: the ids followed are the Widget's ``_jobId`` and ``_scoringJobId``, and a
mask saved while a round runs sets ``_roundPending`` so that the next round starts when this one ends.
"""

import logging

from . import WidgetViews as views
from .BackendClient import BackendUnreachableError
from .BackendTypes import Job, JobState, Ranking
from .i18n import _


class JobFollowing:
    """The ranking and its scoring job, fine-tuning rounds and their job, each with its timer."""

    # -- ranking and its scoring -----------------------------------------------------------------

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
            if ranking.provisional:  # the first scoring: cases are served from those scored so far
                self._setStatus(
                    _(
                        "Scoring the pool (ranking: {scored} of {total} cases scored, provisional): {message}"
                    ).format(
                        scored=ranking.scored, total=ranking.poolSize, message=ranking.job.message or "..."
                    )
                )
            else:
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

    # -- fine-tuning rounds ----------------------------------------------------------------------

    def onTrain(self) -> None:
        self._runTask(
            "train",
            self.logic.startRound,
            self._followJob,
            _("Could not start a round."),
            self._parameterNode.fineTuneSteps or None,
            self._parameterNode.acceptWorseRounds,
        )

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
