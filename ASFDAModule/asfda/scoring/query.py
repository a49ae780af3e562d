"""Active test-time sample query: rank the pool and pick the next cases, for ASFDA and the baselines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import QueryConfig, QueryStrategy
from .case_scores import CaseScores
from .selection import distance_to_set, greedy_select, k_center_greedy, rank_normalize, tie_order


@dataclass
class RankedCase:
    case_id: str
    knowledge_gap: float
    asd: float
    diversity: float  # rank-normalised distance to the labelled set
    score: float  # the strategy's combined score (before in-batch diversity)
    rank: int  # 1 = ask first
    picked: bool


def weighted_base(scores: list[CaseScores], config: QueryConfig) -> tuple[np.ndarray, float]:
    """w_kg * KG~ + w_asd * ASD~ for the strategy, and the weight it gives diversity."""
    kg = rank_normalize([s.knowledge_gap for s in scores])
    asd = rank_normalize([s.asd for s in scores])
    w_kg, w_asd, w_div = {
        QueryStrategy.ASFDA: (config.w_kg, config.w_asd, config.w_div),
        QueryStrategy.DKD: (config.w_kg, 0.0, config.w_div),
        QueryStrategy.ASD: (0.0, config.w_asd, 0.0),
    }[config.strategy]
    return w_kg * kg + w_asd * asd, w_div


def rank_pool(
    scores: list[CaseScores],
    labelled_embeddings: list[list[float]],
    config: QueryConfig,
    last_served: list[float | None] | None = None,
    rng: np.random.Generator | None = None,
) -> list[RankedCase]:
    """Every case of the pool with its scores and rank; the first ``config.budget`` are the picks."""
    if not scores:
        return []
    names = [s.case_id for s in scores]
    last_served = last_served or [None] * len(scores)
    embeddings = np.asarray([s.embedding for s in scores], dtype=np.float64)
    labelled = np.asarray(labelled_embeddings, dtype=np.float64).reshape(-1, embeddings.shape[1])
    kg = np.array([s.knowledge_gap for s in scores])
    asd = np.array([s.asd for s in scores])
    strategy = config.strategy
    diversity_raw = distance_to_set(embeddings, labelled)
    diversity = (
        np.ones(len(scores)) if not np.isfinite(diversity_raw).all() else rank_normalize(diversity_raw)
    )

    if strategy in (QueryStrategy.ASFDA, QueryStrategy.DKD, QueryStrategy.ASD):
        base, w_div = weighted_base(scores, config)
        combined = base + w_div * diversity
        picks = [
            p.index
            for p in greedy_select(base, embeddings, labelled, config.budget, w_div, last_served, names)
        ]
    elif strategy is QueryStrategy.CORESET:
        combined = diversity_raw if np.isfinite(diversity_raw).all() else np.zeros(len(scores))
        picks = k_center_greedy(embeddings, labelled, config.budget)
    elif strategy is QueryStrategy.RANDOM:
        rng = rng or np.random.default_rng()
        combined = rng.random(len(scores))
        picks = []
    else:
        values = [s.mean_entropy if strategy is QueryStrategy.ENTROPY else s.epistemic for s in scores]
        if any(v is None for v in values):
            raise ValueError(f"strategy {strategy.value} needs scores computed with MC dropout")
        combined = np.asarray(values, dtype=np.float64)
        picks = []
    ties = tie_order(last_served, names)
    order = picks + sorted(
        (i for i in range(len(scores)) if i not in picks),
        key=lambda i: (-round(float(combined[i]), 12), ties[i]),
    )
    picked = set(order[: config.budget])
    return [
        RankedCase(
            names[i],
            float(kg[i]),
            float(asd[i]),
            float(diversity[i]),
            float(combined[i]),
            rank + 1,
            i in picked,
        )
        for rank, i in enumerate(order)
    ]
