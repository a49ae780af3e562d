"""Greedy diversified batch selection, and the baselines' selection rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def rank_normalize(values) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties share their mean rank); robust to each metric's scale."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    if values.size == 1:
        return np.ones(1)
    return (rankdata(values, method="average") - 1) / (values.size - 1)


def cosine_distances(embeddings: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(n, m) matrix of 1 - cos between rows; embeddings are L2-normalised already."""
    if len(others) == 0:
        return np.zeros((len(embeddings), 0))
    return 1.0 - np.clip(embeddings @ others.T, -1.0, 1.0)


def distance_to_set(embeddings: np.ndarray, others: np.ndarray) -> np.ndarray:
    """min over the set of 1 - cos; +inf when the set is empty."""
    distances = cosine_distances(embeddings, others)
    return distances.min(axis=1) if distances.shape[1] else np.full(len(embeddings), np.inf)


@dataclass
class Pick:
    index: int
    score: float
    diversity: float


def tie_order(last_served: list[float | None], names: list[str]) -> list[tuple]:
    """Sort keys that prefer the least recently served case (never served first), then the name."""
    return [(-np.inf if served is None else served, name) for served, name in zip(last_served, names)]


def greedy_select(
    base_scores: np.ndarray,
    embeddings: np.ndarray,
    selected_embeddings: np.ndarray,
    budget: int,
    w_div: float,
    last_served: list[float | None],
    names: list[str],
) -> list[Pick]:
    """Pick ``budget`` cases one at a time by base score + w_div * D(x, S), D rank-normalised.

    S holds the labelled cases and the picks made so far, so each pick lowers the value of cases like it.
    With S empty, D = 1 for every case.
    """
    chosen: list[Pick] = []
    selected = np.asarray(selected_embeddings, dtype=np.float64).reshape(-1, embeddings.shape[1])
    remaining = list(range(len(base_scores)))
    keys = tie_order(last_served, names)
    for _ in range(min(budget, len(remaining))):
        candidates = embeddings[remaining]
        raw = distance_to_set(candidates, selected)
        diversity = np.ones(len(remaining)) if not np.isfinite(raw).all() else rank_normalize(raw)
        totals = base_scores[remaining] + w_div * diversity
        best = min(range(len(remaining)), key=lambda i: (-round(totals[i], 12), keys[remaining[i]]))
        index = remaining.pop(best)
        chosen.append(Pick(index, float(totals[best]), float(diversity[best])))
        selected = np.vstack([selected, embeddings[index][None]])
    return chosen


def k_center_greedy(embeddings: np.ndarray, selected_embeddings: np.ndarray, budget: int) -> list[int]:
    """Coreset: repeatedly take the case farthest from everything selected (first pick: farthest from the
    pool's mean when nothing is selected)."""
    selected = np.asarray(selected_embeddings, dtype=np.float64).reshape(-1, embeddings.shape[1])
    if len(selected) == 0:
        centre = embeddings.mean(0, keepdims=True)
        centre /= max(np.linalg.norm(centre), 1e-12)
        selected = centre
    picks: list[int] = []
    remaining = list(range(len(embeddings)))
    for _ in range(min(budget, len(remaining))):
        distances = distance_to_set(embeddings[remaining], selected)
        best = remaining.pop(int(np.argmax(distances)))
        picks.append(best)
        selected = np.vstack([selected, embeddings[best][None]])
    return picks
