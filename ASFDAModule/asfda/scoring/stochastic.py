"""Stochastic batch acquisition (Kirsch et al., TMLR 2023; ClaSP PE in nnActive): sample the batch with
Gumbel-top-k on log(score) / temperature instead of taking the top-k, so a few outliers with extreme scores
do not take every pick, and anneal the temperature as labels accumulate."""

from __future__ import annotations

import numpy as np


def annealed_temperature(initial: float, n_labelled: int, anneal_labelled: float) -> float:
    """t0 / (1 + n_labelled / anneal_labelled): hedged early, close to greedy once many cases are labelled."""
    if anneal_labelled <= 0:
        return initial
    return initial / (1.0 + n_labelled / anneal_labelled)


def gumbel_top_k(scores: np.ndarray, budget: int, temperature: float, rng: np.random.Generator) -> list[int]:
    """Indices of a size-``budget`` sample without replacement, each draw proportional to
    score ** (1 / temperature) (power acquisition). Scores must be >= 0; zero never wins over a positive
    score unless nothing else is left. Temperature 0 is the deterministic top-k."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.any(scores < 0) or not np.all(np.isfinite(scores)):
        raise ValueError("stochastic acquisition needs finite, non-negative scores")
    budget = min(budget, len(scores))
    with np.errstate(divide="ignore"):
        logits = np.log(scores)
    if temperature > 0:
        keys = logits / temperature + rng.gumbel(size=len(scores))
    else:
        keys = logits.copy()
    keys[~np.isfinite(keys)] = -np.inf
    order = sorted(range(len(scores)), key=lambda i: (-keys[i], i))
    return order[:budget]
