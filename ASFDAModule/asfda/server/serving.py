"""Ranking the pool and serving the next case from the cached scores, without making the annotator wait
for a rescoring (only the very first scoring of a pool is waited for); the query settings that rank them."""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException

from ..scoring.query import RankedCase
from ..session.records import CaseRecord
from ..session.session import AdaptationSession
from ..session.store import SessionStore
from . import ranking as ranking_views
from . import schemas
from .job_records import JobState
from .jobs import JobManager
from .settings import ServerSettings

MAX_SCORING_PASSES = 5
PROVISIONAL_POLL_SECONDS = 0.25  # how often a waiting ``next`` looks at the scores landing


class CaseServing:
    """The ranking, next-case and query-settings routes of a :class:`~asfda.server.backend.Backend` (a
    mixin of it; ``_ranking_memo`` keeps the last ranking of the cached scores)."""

    session: AdaptationSession
    store: SessionStore
    settings: ServerSettings
    jobs: JobManager
    serve_lock: threading.Lock
    _ranking_memo: tuple[tuple, list[RankedCase]] | None

    def ranking(self, wait: bool = True) -> schemas.Ranking:
        pool, records, labelled, ranked, job = self._complete_ranking(wait)
        version = pool.version
        name = {r.id: r.name for r in records}
        return schemas.Ranking(
            model_version=version,
            round=self.store.version(version).round,
            cases=ranking_views.case_views(self.store, records, pool, labelled, ranked),
            next=ranking_views.next_case_id(ranked, records, labelled) if ranked is not None else None,
            complete=pool.complete,
            provisional=ranked is not None and not pool.complete,
            scored=len(pool.scores),
            pool_size=len(records),
            job=None if job is None else schemas.Job.of(job),
            skipped=[
                f"{name.get(case_id, case_id)} ({case_id}): {reason}"
                for case_id, reason in pool.skipped.items()
            ],
        )

    def next_case(self, client: str) -> schemas.Case:
        """The case to annotate next, at once from the last complete ranking (the active version's, else,
        while it is being scored, the previous version's with the cases labelled since taken out and their
        embeddings counted for diversity); only the very first scoring of a pool is waited for, and only
        until enough cases are scored for a provisional ranking (``provisional_ready``)."""
        self._await_serving_pool()
        with self.serve_lock:
            records = self.store.cases()
            labelled = set(self.store.labelled_ids())
            pool = self._serving_pool(records, labelled)
            if pool is None:
                raise HTTPException(409, "the pool changed while it was scored: ask again")
            ranked = self._rank(pool, records, labelled)
            record = self.session.next_case(ranked)
            if record is None:
                raise HTTPException(
                    404,
                    "no unlabelled case left to annotate" if records else "no cases yet: add volumes first",
                )
            self.store.log(
                "case_served",
                case=record.id,
                client=client,
                model_version=pool.version,
                **({} if pool.complete else {"provisional": f"{len(pool.scores)} of {len(records)} scored"}),
            )
            views = ranking_views.case_views(self.store, self.store.cases(), pool, labelled, ranked)
        return next(view for view in views if view.id == record.id)

    def _serving_pool(
        self, records: list[CaseRecord] | None = None, labelled: set[str] | None = None
    ) -> ranking_views.PoolScores | None:
        """The cached scores ``next`` serves from: the active version's when complete; else (their scoring
        is started or joined) the newest earlier version's that cover the pool; else, during the pool's
        first scoring, the active version's scored so far once they make a provisional ranking with a
        case no one holds; None before that."""
        records = self.store.cases() if records is None else records
        labelled = set(self.store.labelled_ids()) if labelled is None else labelled
        strategy = self.session.query_config.strategy
        active = self.store.active_version
        pool = ranking_views.cached_scores(self.store, active, records, strategy)
        if pool.complete:
            return pool
        self.jobs.ensure_scoring(active)
        earlier = [v.id for v in reversed(self.store.versions()) if v.id != active]
        complete = ranking_views.last_complete_pool(self.store, records, strategy, earlier)
        if complete is not None:
            return complete
        now = time.time()
        servable = any(
            ranking_views.is_free(r, now) for r in records if r.id in pool.scores and r.id not in labelled
        )
        ready = ranking_views.provisional_ready(pool, labelled, self.settings.provisional_min_scored)
        return pool if servable and ready else None

    def _await_serving_pool(self) -> None:
        """Wait while ``next`` has nothing to serve from (the pool's first scoring, until a provisional
        ranking can be made): the scoring job is followed, the cached scores looked at as they land."""
        deadline = time.monotonic() + self.settings.ranking_wait_seconds
        finished: set[str] = set()
        while self._serving_pool() is None:
            job = self.jobs.ensure_scoring(self.store.active_version)
            if len(finished) >= MAX_SCORING_PASSES:  # cases kept arriving as the pool was scored
                raise HTTPException(
                    409, f"the pool kept changing during {MAX_SCORING_PASSES} scoring passes: ask again"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPException(409, f"scoring job {job.id} is still running ({job.message}); ask later")
            job = self.jobs.wait(job.id, min(PROVISIONAL_POLL_SECONDS, remaining))
            if job.state.finished:
                if job.state is not JobState.DONE:
                    raise HTTPException(409, f"scoring job {job.id} {job.state.value}: {job.message}")
                finished.add(job.id)

    def _complete_ranking(self, wait: bool):
        """Cached scores of the active version, scoring them first (as a job) when some are missing; without
        ``wait``, the ranking of those scored so far when it may be served (a provisional one)."""
        deadline = time.monotonic() + self.settings.ranking_wait_seconds
        for _ in range(MAX_SCORING_PASSES):  # more passes only when cases arrive while the pool is scored
            records = self.store.cases()
            labelled = set(self.store.labelled_ids())
            version = self.store.active_version
            pool = ranking_views.cached_scores(
                self.store, version, records, self.session.query_config.strategy
            )
            if pool.complete:
                return pool, records, labelled, self._rank(pool, records, labelled), None
            job = self.jobs.ensure_scoring(version)
            if not wait:
                serving = self._serving_pool(records, labelled)
                if serving is not None and serving.version == version:  # the cases scored so far
                    return serving, records, labelled, self._rank(serving, records, labelled), job
                return pool, records, labelled, None, job
            job = self.jobs.wait(job.id, max(deadline - time.monotonic(), 0.0))
            if not job.state.finished:
                raise HTTPException(409, f"scoring job {job.id} is still running ({job.message}); ask later")
            if job.state is not JobState.DONE:
                raise HTTPException(409, f"scoring job {job.id} {job.state.value}: {job.message}")
        raise HTTPException(
            409, f"the pool kept changing during {MAX_SCORING_PASSES} scoring passes: ask again"
        )

    def _rank(self, pool, records: list[CaseRecord], labelled: set[str]) -> list[RankedCase]:
        config = self.session.query_config
        key = (
            pool.version,
            frozenset(pool.scores),  # a provisional ranking grows with each case scored
            tuple((r.id, r.last_served) for r in records),
            frozenset(labelled),
            config.strategy,
            config.budget,
        )
        memo = self._ranking_memo
        if memo is not None and memo[0] == key:
            return memo[1]
        ranked = ranking_views.rank_cached(pool, records, labelled, config)
        self._ranking_memo = (key, ranked)
        return ranked

    # -- query -------------------------------------------------------------------------------------------
    def query_settings(self) -> schemas.QuerySettings:
        config = self.session.query_config
        return schemas.QuerySettings(strategy=config.strategy, budget=config.budget)

    def set_query(self, request: schemas.QueryRequest) -> schemas.QuerySettings:
        """A new strategy ranks from the cached scores; one that needs other scores (epistemic) starts a
        scoring job at the next ranking."""
        with self.serve_lock:
            self.session.set_query(request.strategy, request.budget)
        return self.query_settings()
