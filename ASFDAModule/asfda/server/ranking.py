"""The ranking and the case list as the backend serves them, built from the score cache only.

The backend never scores in its own process (that is a job's work): a ranking is computed here only when
every case has cached scores under the model version asked for, which makes it cheap (no model, no volume).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import QueryConfig, QueryStrategy
from ..errors import StoreError
from ..scoring.case_scores import CaseScores
from ..scoring.query import RankedCase, rank_pool
from ..session.files import read_json
from ..session.records import CaseRecord
from ..session.session import SERVE_LEASE_SECONDS
from ..session.store import SessionStore
from . import schemas


@dataclass
class PoolScores:
    version: str
    scores: dict[str, CaseScores]
    missing: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # case id -> why its scoring failed

    @property
    def complete(self) -> bool:
        return not self.missing


def provisional_ready(pool: PoolScores, labelled: set[str], minimum: int) -> bool:
    """Whether the cases scored so far may be ranked and served before the pool is complete: once
    ``minimum`` unlabelled cases are scored (all of them, in a smaller pool).

    The scoring takes the pool in spread order, so the scored cases are a sample of it: the best of k
    is expected near rank n / (k + 1) of the full ranking, whatever the pool's size, and their ranking
    (typicality, clusters, diversity) is computed among them alone."""
    waiting = [case_id for case_id in pool.missing if case_id not in labelled]
    scored = [case_id for case_id in pool.scores if case_id not in labelled]
    return bool(scored) and len(scored) >= min(minimum, len(scored) + len(waiting))


def is_free(record: CaseRecord, now: float) -> bool:
    """Not handed to an annotator in the last half hour."""
    return record.last_served is None or now - record.last_served > SERVE_LEASE_SECONDS


def cached_scores(
    store: SessionStore,
    version: str,
    records: list[CaseRecord],
    strategy: QueryStrategy = QueryStrategy.ASFDA,
) -> PoolScores:
    """The cached scores of every case under ``version``; ``missing`` lists the cases still to score."""
    scores, missing, skipped = {}, [], {}
    for record in records:
        marker = store.skipped_path(version, record.id)
        if marker.is_file():
            skipped[record.id] = str(read_json(marker, {}).get("error", "could not be scored"))
            continue
        path = store.scores_path(version, record.id)
        try:
            score = CaseScores.from_json(read_json(path)) if path.is_file() else None
        except (StoreError, TypeError):
            score = None  # unreadable: the scoring job writes it again
        if score is None or (strategy is QueryStrategy.EPISTEMIC and score.epistemic is None):
            missing.append(record.id)
        else:
            scores[record.id] = score
    return PoolScores(version, scores, missing, skipped)


def last_complete_pool(
    store: SessionStore, records: list[CaseRecord], strategy: QueryStrategy, versions: list[str]
) -> PoolScores | None:
    """The first of ``versions`` whose cached scores cover every case: the ranking to serve from while the
    active version's are still being computed (after a round, the parent's, with its embeddings)."""
    for version in versions:
        pool = cached_scores(store, version, records, strategy)
        if pool.complete and pool.scores:
            return pool
    return None


def rank_cached(
    pool: PoolScores, records: list[CaseRecord], labelled: set[str], config: QueryConfig
) -> list[RankedCase]:
    """The unlabelled pool ranked like ``AdaptationSession.rank`` does, from complete cached scores."""
    served = {r.id: r.last_served for r in records}
    unlabelled = [pool.scores[r.id] for r in records if r.id not in labelled and r.id in pool.scores]
    labelled_embeddings = [pool.scores[c].embedding for c in labelled if c in pool.scores]
    return rank_pool(unlabelled, labelled_embeddings, config, [served[s.case_id] for s in unlabelled])


def next_case_id(
    ranking: list[RankedCase], records: list[CaseRecord], labelled: set[str], now: float | None = None
) -> str | None:
    """The case ``AdaptationSession.next_case`` would hand out now (without marking it served)."""
    now = time.time() if now is None else now
    served = {r.id: r for r in records}
    candidates = [r for r in ranking if r.case_id not in labelled]
    free = [r for r in candidates if is_free(served[r.case_id], now)]
    chosen = free or sorted(candidates, key=lambda r: served[r.case_id].last_served or 0.0)
    return chosen[0].case_id if chosen else None


def iso_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def pseudo_labelled_cases(store: SessionStore, version: str) -> set[str]:
    """Cases the round that made ``version`` trained on with pseudo-labels."""
    for data in store.rounds():
        if data.get("model_version") == version:
            return set(data.get("pseudo_labelled") or [])
    return set()


def case_views(
    store: SessionStore,
    records: list[CaseRecord],
    pool: PoolScores,
    labelled: set[str],
    ranking: list[RankedCase] | None,
) -> list[schemas.Case]:
    """Every case with its status and scores, ranked cases first (by rank), then unscored, then labelled;
    a rank from an incomplete pool is marked provisional."""
    ranked = {r.case_id: r for r in ranking or []}
    pseudo = pseudo_labelled_cases(store, pool.version)
    now = time.time()
    views = []
    for record in records:
        scores, row = pool.scores.get(record.id), ranked.get(record.id)
        if record.id in labelled:
            status = schemas.CaseStatus.LABELLED
        elif (row is not None and row.picked) or (
            record.last_served is not None and now - record.last_served <= SERVE_LEASE_SECONDS
        ):
            status = schemas.CaseStatus.SUGGESTED
        elif record.id in pseudo:
            status = schemas.CaseStatus.PSEUDO_LABELLED
        else:
            status = schemas.CaseStatus.UNLABELLED
        views.append(
            schemas.Case(
                id=record.id,
                name=record.name,
                source_path=record.source_path,
                status=status,
                dkd=schemas.finite(scores.knowledge_gap) if scores else None,
                asd=schemas.finite(scores.asd) if scores else None,
                score=schemas.finite(row.score) if row else None,
                rank=row.rank if row else None,
                model_version=pool.version if scores else None,
                last_served=iso_time(record.last_served),
                added=record.added,
                provisional=row is not None and not pool.complete,
            )
        )
    order = {case_id: index for index, case_id in enumerate(ranked)}
    return sorted(
        views, key=lambda v: (v.status is schemas.CaseStatus.LABELLED, order.get(v.id, len(order)), v.name)
    )
