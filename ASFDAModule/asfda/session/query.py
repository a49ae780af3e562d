"""The query on a session's pool: rank the unlabelled cases by the query strategy and hand the best one to
an annotator, who holds it for half an hour."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from ..config import QueryConfig, QueryStrategy
from ..scoring.query import RankedCase, rank_pool
from .callbacks import Cancelled, Progress
from .files import read_json, write_json_atomic
from .records import CaseRecord, now_iso
from .store import SessionStore

SERVE_LEASE_SECONDS = 30 * 60  # a case handed to one annotator is not handed to another for this long


def spread_order(count: int) -> list[int]:
    """0 .. count-1 in bit-reversed (van der Corput) order: every prefix spreads evenly over the range, so
    the first cases scored of a folder sorted by site or scanner are not all from its first files."""
    bits = max(count - 1, 0).bit_length()
    reversed_bits = (int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(1 << bits))
    return [i for i in reversed_bits if i < count]


def scoring_order(records: list[CaseRecord], now: float) -> list[CaseRecord]:
    """The cases handed to an annotator in the last half hour first, the latest first (after a round, the open
    case's new prediction is the one awaited), then the others spread over the pool (``spread_order``): a
    ranking of the cases scored so far (a provisional one) stands for the whole pool."""
    served = sorted(
        (r for r in records if r.last_served is not None and now - r.last_served <= SERVE_LEASE_SECONDS),
        key=lambda r: -r.last_served,
    )
    first = {r.id for r in served}
    others = [r for r in records if r.id not in first]
    return served + [others[i] for i in spread_order(len(others))]


class PoolQuery:
    """Ranking and serving of an :class:`~asfda.session.session.AdaptationSession` (a mixin of it: it ranks
    the scores of the session's ``score_all()``)."""

    store: SessionStore
    query_config: QueryConfig

    def rank(
        self,
        config: QueryConfig | None = None,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
        rng: np.random.Generator | None = None,
    ) -> list[RankedCase]:
        """The unlabelled pool ranked by the query strategy; the labelled cases count for diversity."""
        config = config or self.query_config
        scores = self.score_all(progress, cancelled, epistemic=config.strategy is QueryStrategy.EPISTEMIC)
        labelled = set(self.store.labelled_ids())
        records = {r.id: r for r in self.store.cases()}
        pool = [s for case_id, s in scores.items() if case_id not in labelled]
        labelled_embeddings = [scores[case_id].embedding for case_id in labelled if case_id in scores]
        ranking = rank_pool(
            pool, labelled_embeddings, config, [records[s.case_id].last_served for s in pool], rng
        )
        write_json_atomic(
            self.store.root / "scores" / self.store.active_version / "ranking.json",
            {
                "created": now_iso(),
                "strategy": config.strategy.value,
                "ranking": [asdict(r) for r in ranking],
            },
        )
        return ranking

    def latest_ranking(self) -> list[RankedCase] | None:
        path = self.store.root / "scores" / self.store.active_version / "ranking.json"
        return [RankedCase(**row) for row in read_json(path)["ranking"]] if path.is_file() else None

    def next_case(self, ranking: list[RankedCase] | None = None) -> CaseRecord | None:
        """The best-ranked unlabelled case that no one was handed in the last half hour; marks it served."""
        ranking = ranking if ranking is not None else (self.latest_ranking() or self.rank())
        labelled = set(self.store.labelled_ids())
        records = {r.id: r for r in self.store.cases()}
        now = time.time()
        candidates = [r for r in ranking if r.case_id not in labelled]
        free = [
            r
            for r in candidates
            if records[r.case_id].last_served is None
            or now - records[r.case_id].last_served > SERVE_LEASE_SECONDS
        ]
        chosen = (free or sorted(candidates, key=lambda r: records[r.case_id].last_served or 0.0))[:1]
        return self.store.mark_served(chosen[0].case_id, now) if chosen else None
