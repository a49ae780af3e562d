"""Active test-time sample query: rank the pool and pick the next cases, for ASFDA and the baselines."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..config import QueryConfig, QueryStrategy
from .case_scores import CaseScores
from .class_entropy import class_stratified_entropy
from .coverage import (
    cluster_then_difficulty,
    positive_ranks,
    relative_knowledge_gap,
    relative_knowledge_gap_picks,
)
from .selection import distance_to_set, greedy_select, k_center_greedy, rank_normalize, tie_order
from .stochastic import annealed_temperature, gumbel_top_k
from .typicality import centred, cluster_then_pick, typicality


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


REPRESENTATIVE = (
    QueryStrategy.TYPICLUST,
    QueryStrategy.DENSITY,
    QueryStrategy.STOCHASTIC,
    QueryStrategy.TYPICAL_STOCHASTIC,
    QueryStrategy.CLASP,
    QueryStrategy.CLUSTER_DIFFICULTY,
    QueryStrategy.RELATIVE_DKD,
)


def representative_picks(
    embeddings: np.ndarray,
    labelled: np.ndarray,
    asd: np.ndarray,
    config: QueryConfig,
    rng: np.random.Generator | None,
    class_entropy: np.ndarray | None = None,
    knowledge_gap: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Scores and picks of the strategies that prefer typical cases, cover the pool's modes (``coverage``)
    or sample stochastically.

    Difficulty and typicality enter as percentile ranks shifted into (0, 1], so a product or a power of
    them stays positive and no single extreme value dominates.
    """
    rng = rng or np.random.default_rng(0)
    n = len(embeddings)
    if config.centre_embeddings:
        # Labelled cases are centred on the same (pool) mean, so distances between the two sets keep meaning.
        space = centred(embeddings)
        labelled_space = centred(labelled, embeddings) if len(labelled) else labelled
    else:
        space, labelled_space = embeddings, labelled
    difficulty = positive_ranks(asd)
    typical = positive_ranks(typicality(space, config.typicality_neighbours))
    strategy = config.strategy
    temperature = annealed_temperature(config.gumbel_temperature, len(labelled), config.anneal_labelled)
    seed = int(rng.integers(2**31))
    if strategy is QueryStrategy.CLUSTER_DIFFICULTY:
        mix = config.cluster_difficulty_mix
        picks = cluster_then_difficulty(
            space, labelled_space, asd, config.budget, mix, config.typicality_neighbours, seed
        )
        return typical ** (1.0 - mix) * difficulty**mix, picks
    if strategy is QueryStrategy.RELATIVE_DKD:
        gap = np.zeros(n) if knowledge_gap is None else knowledge_gap
        picks = relative_knowledge_gap_picks(gap, space, labelled_space, config.budget)
        return relative_knowledge_gap(gap, space, labelled_space), picks
    if strategy is QueryStrategy.TYPICLUST or (
        strategy is QueryStrategy.TYPICAL_STOCHASTIC and len(labelled) == 0
    ):
        picks = cluster_then_pick(space, labelled_space, config.budget, config.typicality_neighbours, seed)
        return typical, picks
    if strategy is QueryStrategy.DENSITY:
        combined = difficulty * typical
        picks = greedy_select(
            combined,
            space,
            labelled_space,
            config.budget,
            config.w_div,
            [None] * n,
            [f"{i:06d}" for i in range(n)],
        )
        return combined, [p.index for p in picks]
    if strategy is QueryStrategy.CLASP:
        combined = positive_ranks(class_entropy if class_entropy is not None else asd)
        return combined, gumbel_top_k(combined, config.budget, temperature, rng)
    combined = difficulty if strategy is QueryStrategy.STOCHASTIC else difficulty * typical
    return combined, gumbel_top_k(combined, config.budget, temperature, rng)


def stable_rng(case_ids: list[str], n_labelled: int) -> np.random.Generator:
    """The stochastic strategies' draw in a live session: fixed by the pool and the labelled count, so a
    refresh or a restart ranks the same way, and a new draw comes with each new label."""
    key = f"{n_labelled}:" + ",".join(sorted(case_ids))
    return np.random.default_rng(zlib.crc32(key.encode()))


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
    rng = rng or stable_rng(names, len(labelled_embeddings))
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
    elif strategy in REPRESENTATIVE:
        class_entropy = np.array(
            [class_stratified_entropy(s.per_class_entropy) if s.per_class_entropy else s.asd for s in scores]
        )
        combined, picks = representative_picks(
            embeddings, labelled, asd, config, rng, class_entropy, knowledge_gap=kg
        )
    elif strategy is QueryStrategy.CORESET:
        combined = diversity_raw if np.isfinite(diversity_raw).all() else np.zeros(len(scores))
        picks = k_center_greedy(embeddings, labelled, config.budget)
    elif strategy is QueryStrategy.RANDOM:
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
