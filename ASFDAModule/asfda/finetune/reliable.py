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


def classwise_thresholds(
    confidence: torch.Tensor, pseudo_labels: torch.Tensor, num_classes: int, tau_vox: float
) -> torch.Tensor:
    """Per class, min(tau_vox, the median confidence of the voxels the teacher gives that class).

    FlexMatch-like: a class the teacher is still unsure of (a small organ after one labelled case) gets a
    lower bar, so its voxels are not all masked out while the easy background passes everywhere.
    """
    thresholds = torch.full((num_classes,), float(tau_vox), device=confidence.device)
    for label in range(num_classes):
        values = confidence[pseudo_labels == label]
        if values.numel():
            thresholds[label] = torch.clamp(values.float().median(), max=tau_vox)
    return thresholds


def class_balanced_cross_entropy(
    logits: torch.Tensor, probabilities: torch.Tensor, tau_vox: float
) -> torch.Tensor:
    """Masked cross-entropy with class-wise thresholds, each pseudo-label class weighted equally.

    With one mean over voxels, background (most of a patch) decides the loss and pulls the student towards
    predicting less foreground; averaging per class first gives each structure the same say.
    """
    confidence, pseudo_labels = probabilities.max(1)
    thresholds = classwise_thresholds(confidence, pseudo_labels, probabilities.shape[1], tau_vox)
    mask = confidence >= thresholds[pseudo_labels]
    losses = torch.nn.functional.cross_entropy(logits.float(), pseudo_labels, reduction="none")
    per_class = [losses[mask & (pseudo_labels == c)].mean() for c in pseudo_labels[mask].unique()]
    return torch.stack(per_class).mean() if per_class else logits.sum() * 0.0
