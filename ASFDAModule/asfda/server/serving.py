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
            job=None if job is None else schemas.Job.of(job),
            skipped=[
                f"{name.get(case_id, case_id)} ({case_id}): {reason}"
                for case_id, reason in pool.skipped.items()
            ],
        )

    def next_case(self, client: str) -> schemas.Case:
        """The case to annotate next, at once from the last complete ranking (the active version's, else,
        while it is being scored, the previous version's with the cases labelled since taken out and their
        embeddings counted for diversity); only the very first scoring of a pool is waited for."""
        if self._serving_pool() is None:
            self._complete_ranking(wait=True)
        with self.serve_lock:
            records = self.store.cases()
            labelled = set(self.store.labelled_ids())
            pool = self._serving_pool(records)
            if pool is None:
                raise HTTPException(409, "the pool changed while it was scored: ask again")
            ranked = self._rank(pool, records, labelled)
            record = self.session.next_case(ranked)
            if record is None:
                raise HTTPException(
                    404,
                    "no unlabelled case left to annotate" if records else "no cases yet: add volumes first",
                )
            self.store.log("case_served", case=record.id, client=client, model_version=pool.version)
            views = ranking_views.case_views(self.store, self.store.cases(), pool, labelled, ranked)
        return next(view for view in views if view.id == record.id)

    def _serving_pool(self, records: list[CaseRecord] | None = None) -> ranking_views.PoolScores | None:
        """The cached scores ``next`` serves from: the active version's when complete; else (their scoring
        is started or joined) the newest earlier version's that cover the pool; None before any."""
        records = self.store.cases() if records is None else records
        strategy = self.session.query_config.strategy
        active = self.store.active_version
        pool = ranking_views.cached_scores(self.store, active, records, strategy)
        if pool.complete:
            return pool
        self.jobs.ensure_scoring(active)
        earlier = [v.id for v in reversed(self.store.versions()) if v.id != active]
        return ranking_views.last_complete_pool(self.store, records, strategy, earlier)

    def _complete_ranking(self, wait: bool):
        """Cached scores of the active version, scoring them first (as a job) when some are missing."""
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
