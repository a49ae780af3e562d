"""Query candidates for pools with rare hard sub-populations (a hospital's archive: routine protocols plus a
few unusual cases), where a query has room only if it reaches the rare modes.

- Cluster-then-difficulty: TypiClust's clusters (``typicality.cluster_then_pick``), but inside each uncovered
  cluster the case with the highest value T~^(1 - m) x A~^m, T~ and A~ the percentile ranks in (0, 1] of
  typicality and ASD. m = 1 takes the most difficult member (the rule); m = 0 is ``typiclust``; in between is
  the rank-product hedge against a cluster's own outlier.
- Relative knowledge gap: score(x | S) = KG~(x) x D(x, S), KG~ the percentile rank of the knowledge gap in
  (0, 1], D(x, S) = min over s in S of (1 - cos(e(x), e(s))) / 2 in [0, 1], S the labelled cases and the
  picks so far (D = 1 while S is empty); greedy over the batch. The gap to the source knowledge counts only
  where the labelled set does not already cover the case: a case whose near-twin is labelled scores ~0.
"""

from __future__ import annotations

import numpy as np

from .selection import distance_to_set, rank_normalize
from .typicality import cluster_then_pick, typicality


def positive_ranks(values) -> np.ndarray:
    """Percentile ranks shifted into (0, 1], so products and powers of them stay positive."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    return (rank_normalize(values) * (n - 1) + 1) / n if n else values


def cluster_then_difficulty(
    embeddings: np.ndarray,
    labelled: np.ndarray,
    difficulty: np.ndarray,
    budget: int,
    mix: float = 1.0,
    neighbours: int = 10,
    seed: int = 0,
) -> list[int]:
    """Pool indices in pick order: one case from each of the largest clusters with no labelled case (the
    clusters of ``cluster_then_pick``), the one with the highest T~^(1 - mix) x difficulty~^mix."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"the difficulty mix must lie in [0, 1], got {mix}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    difficulty = np.asarray(difficulty, dtype=np.float64)
    if len(difficulty) != len(embeddings):
        raise ValueError(f"{len(difficulty)} difficulty scores for {len(embeddings)} cases")
    typical = positive_ranks(typicality(embeddings, neighbours))
    value = typical ** (1.0 - mix) * positive_ranks(difficulty) ** mix
    return cluster_then_pick(embeddings, labelled, budget, neighbours, seed, value=value)


def relative_knowledge_gap(
    knowledge_gap: np.ndarray, embeddings: np.ndarray, selected: np.ndarray
) -> np.ndarray:
    """score(x | S) = KG~(x) x D(x, S) for every row; KG~ ranks over the rows given (the pool)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    selected = np.asarray(selected, dtype=np.float64).reshape(-1, embeddings.shape[1])
    distance = distance_to_set(embeddings, selected) / 2.0  # cosine distance lies in [0, 2]
    coverage = np.ones(len(embeddings)) if len(selected) == 0 else distance
    return positive_ranks(knowledge_gap) * coverage


def relative_knowledge_gap_picks(
    knowledge_gap: np.ndarray, embeddings: np.ndarray, labelled: np.ndarray, budget: int
) -> list[int]:
    """Greedy batch: each pick maximises KG~ x D(x, labelled + picks so far); ties go to the lower index."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    knowledge_gap = np.asarray(knowledge_gap, dtype=np.float64)
    if len(knowledge_gap) != len(embeddings):
        raise ValueError(f"{len(knowledge_gap)} knowledge gaps for {len(embeddings)} cases")
    gap = positive_ranks(knowledge_gap)  # ranked once over the whole pool, not over what is left
    selected = np.asarray(labelled, dtype=np.float64).reshape(-1, embeddings.shape[1])
    picks: list[int] = []
    for _ in range(min(max(budget, 0), len(embeddings))):
        coverage = distance_to_set(embeddings, selected) / 2.0 if len(selected) else np.ones(len(gap))
        score = gap * coverage
        score[picks] = -np.inf
        best = int(np.argmax(score))  # the first of equal maxima
        picks.append(best)
        selected = np.vstack([selected, embeddings[best][None]])
    return picks
