"""Class-stratified foreground entropy (ClaSP PE in nnActive, Lüth et al. 2025): the mean over every
foreground class of the entropy near that class, where a class the model never predicts counts as maximally
difficult (normalised entropy 1) instead of dropping out of the mean, so an organ the model misses entirely
raises the case's difficulty."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MISSING_CLASS_ENTROPY = 1.0


def per_class_with_missing(per_class: Mapping[int, float], num_classes: int) -> dict[int, float]:
    """Every foreground class 1..C-1: its entropy, or MISSING_CLASS_ENTROPY when it was never predicted."""
    return {c: float(per_class.get(c, MISSING_CLASS_ENTROPY)) for c in range(1, num_classes)}


def class_stratified_entropy(per_class: Mapping) -> float:
    """The mean over the classes of a dict from :func:`per_class_with_missing` (JSON keys may be strings)."""
    values = [float(v) for v in per_class.values()]
    return float(np.mean(values)) if values else MISSING_CLASS_ENTROPY
