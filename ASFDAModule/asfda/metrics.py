"""Segmentation quality against reference masks: Dice and the 95th-percentile Hausdorff distance (MONAI)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return one_hot(torch.as_tensor(labels).long()[None, None], num_classes)


def dice_per_class(prediction, reference, num_classes: int) -> dict[int, float]:
    """Dice of each foreground class present in the reference or the prediction (absent in both: skipped)."""
    pred, ref = _one_hot(prediction, num_classes), _one_hot(reference, num_classes)
    scores = compute_dice(pred, ref, include_background=False, ignore_empty=False)[0]
    present = (pred[0, 1:].flatten(1).any(1) | ref[0, 1:].flatten(1).any(1)).tolist()
    return {c + 1: float(scores[c]) for c in range(num_classes - 1) if present[c]}


def hd95_per_class(prediction, reference, num_classes: int, spacing=None) -> dict[int, float]:
    """HD95 in mm per foreground class present in both (undefined otherwise)."""
    pred, ref = _one_hot(prediction, num_classes), _one_hot(reference, num_classes)
    with warnings.catch_warnings():  # MONAI warns about classes empty in one map; those are skipped below
        warnings.simplefilter("ignore")
        distances = compute_hausdorff_distance(
            pred,
            ref,
            include_background=False,
            percentile=95,
            spacing=list(spacing) if spacing is not None else None,
        )[0]
    both = (pred[0, 1:].flatten(1).any(1) & ref[0, 1:].flatten(1).any(1)).tolist()
    return {c + 1: float(distances[c]) for c in range(num_classes - 1) if both[c]}


def mean_of(values: dict[int, float]) -> float:
    finite = [v for v in values.values() if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
