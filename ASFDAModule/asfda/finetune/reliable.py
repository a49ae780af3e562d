"""Which unlabelled cases are reliable enough to learn from their own pseudo-labels."""

from __future__ import annotations

import math

import numpy as np
import torch


def relative_threshold(confidence: np.ndarray, tau_conf: float, quantile: float | None) -> float:
    """tau_conf, or with ``quantile`` set the pool's confidence at that quantile (relative, FlexMatch-like):
    the top (1 - quantile) of the pool passes whatever the model's absolute calibration."""
    if quantile is None:
        return tau_conf
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"tau_conf_quantile must lie in [0, 1], got {quantile}")
    confidence = np.asarray(confidence, dtype=np.float64)
    return float(np.quantile(confidence, quantile)) if confidence.size else tau_conf


def reliable_cases(
    confidence: np.ndarray,
    distance_to_labelled: np.ndarray,
    tau_conf: float,
    tau_dist: float | None = None,
    quantile: float | None = None,
) -> np.ndarray:
    """Mask of cases with mean confidence >= tau_conf AND distance to the labelled set <= tau_dist.

    tau_dist defaults to the median distance over the pool: only cases that look like something an annotator
    has already corrected are trusted. ``quantile`` makes tau_conf relative to the pool (see above).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    tau_conf = relative_threshold(confidence, tau_conf, quantile)
    distance = np.asarray(distance_to_labelled, dtype=np.float64)
    if distance.size == 0 or not np.isfinite(distance).all():
        return np.zeros(confidence.shape, dtype=bool)
    threshold = float(np.median(distance)) if tau_dist is None else tau_dist
    return (confidence >= tau_conf) & (distance <= threshold)


def unlabelled_weight(step: int, steps: int, maximum: float) -> float:
    """lambda_u ramped from 0 to ``maximum`` over the round (sigmoid-shaped, as in mean-teacher work)."""
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return maximum * math.exp(-5.0 * (1.0 - progress) ** 2)


def masked_cross_entropy(logits: torch.Tensor, probabilities: torch.Tensor, tau_vox: float) -> torch.Tensor:
    """Cross-entropy against the teacher's arg-max, counting only voxels where the teacher is confident."""
    confidence, pseudo_labels = probabilities.max(1)
    mask = (confidence >= tau_vox).float()
    losses = torch.nn.functional.cross_entropy(logits.float(), pseudo_labels, reduction="none")
    return (losses * mask).sum() / mask.sum().clamp_min(1.0)
