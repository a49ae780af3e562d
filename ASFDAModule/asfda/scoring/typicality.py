"""Representativeness for the first picks: typicality (TypiClust, Hacohen et al. 2022) in a centred
embedding space, and cluster-then-pick batches that cover the pool's modes rather than its tails.

On the single-template benchmark the pool's farthest outlier taught least (METHOD, evidence): a cold start
should take typical cases, one per uncovered mode.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.vq import kmeans2


def centred(embeddings: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Rows minus the mean of ``reference`` (default: the rows), L2-normalised again.

    Class-prototype embeddings of one anatomy share a large common component (median pairwise cosine
    distance 0.01); removing it leaves the directions in which cases differ.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.size == 0:
        return embeddings
    reference = embeddings if reference is None or len(reference) == 0 else np.asarray(reference)
    shifted = embeddings - reference.mean(0, keepdims=True)
    norms = np.linalg.norm(shifted, axis=1, keepdims=True)
    return shifted / np.maximum(norms, 1e-12)


def typicality(embeddings: np.ndarray, neighbours: int = 10) -> np.ndarray:
    """TypiClust's typicality: 1 / mean Euclidean distance to the k nearest other rows (k capped at n-1)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    n = len(embeddings)
    if n <= 1:
        return np.ones(n)
    k = max(1, min(neighbours, n - 1))
    squared = np.sum((embeddings[:, None, :] - embeddings[None, :, :]) ** 2, axis=-1)
    np.fill_diagonal(squared, np.inf)
    nearest = np.sort(np.sqrt(squared), axis=1)[:, :k]
    return 1.0 / np.maximum(nearest.mean(1), 1e-12)


def cluster_then_pick(
    embeddings: np.ndarray,
    labelled: np.ndarray,
    budget: int,
    neighbours: int = 10,
    seed: int = 0,
    weights: np.ndarray | None = None,
    min_cluster_size: int = 2,
    value: np.ndarray | None = None,
) -> list[int]:
    """TypiClust batch: k-means over pool and labelled cases together, with k grown from |L| + budget until
    that many clusters have at least ``min_cluster_size`` members (a lone outlier is a cluster too small to
    be a mode, as in TypiClust's code); from the largest clusters that hold no labelled case (or pick so
    far), take the case with the highest typicality (times ``weights`` when given, e.g. a difficulty
    score), or the highest ``value`` when given (``coverage.cluster_then_difficulty``). Returns pool indices
    in pick order.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.float64).reshape(-1, embeddings.shape[1])
    n = len(embeddings)
    budget = min(budget, n)
    if budget <= 0:
        return []
    everything = np.vstack([embeddings, labelled])
    distinct = len(np.unique(everything, axis=0))  # k-means cannot make more clusters than distinct rows
    needed = min(len(labelled) + budget, distinct)
    assignment = np.zeros(len(everything), dtype=int)
    for k in range(max(needed, 2), distinct + 1):
        _, assignment = kmeans2(everything, k, minit="++", seed=seed, iter=20)
        sizes = np.bincount(assignment)
        if np.sum(sizes >= min_cluster_size) >= needed:
            break
    sizes = np.bincount(assignment, minlength=assignment.max() + 1)
    pool_clusters, labelled_clusters = assignment[:n], set(assignment[n:].tolist())
    # Clusters too small to be a mode count as covered: their cases come last, by value.
    labelled_clusters |= {c for c in range(len(sizes)) if sizes[c] < min_cluster_size}
    value = typicality(embeddings, neighbours) if value is None else np.asarray(value, dtype=np.float64)
    if weights is not None:
        value = value * np.asarray(weights, dtype=np.float64)
    picks: list[int] = []
    covered = set(labelled_clusters)
    while len(picks) < budget:
        sizes = {c: int(np.sum(pool_clusters == c)) for c in set(pool_clusters.tolist()) - covered}
        candidates = [c for c in sorted(sizes, key=lambda c: (-sizes[c], c))]
        free = [i for i in range(n) if i not in picks]
        if candidates:
            members = [i for i in free if pool_clusters[i] == candidates[0]]
            covered.add(candidates[0])
            if not members:
                continue
        else:  # every cluster covered: the most valuable case left
            members = free
        picks.append(max(members, key=lambda i: (value[i], -i)))
    return picks
