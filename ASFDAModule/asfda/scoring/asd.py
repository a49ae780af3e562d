"""ASD, Anatomical Segmentation Difficulty: class-balanced entropy over the adaptive foreground."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..config import AsdConfig
from .region import adaptive_foreground, entropy_threshold


@dataclass
class AsdResult:
    score: float
    threshold: float
    foreground_voxels: int
    no_foreground_found: bool
    per_class: dict[int, float]
    confidence: float  # mean max-probability over F, used to pick reliable pseudo-labelled cases


def nearest_class(labels: torch.Tensor) -> torch.Tensor:
    """For each voxel, the predicted foreground class of the nearest voxel predicted as foreground.

    SciPy's exact Euclidean distance transform on the host (only the label map travels, one byte a voxel);
    the result comes back to the labels' device.
    """
    labels_np = labels.to("cpu", torch.uint8 if int(labels.max()) < 256 else torch.int32).numpy()
    _, indices = ndimage.distance_transform_edt(labels_np == 0, return_indices=True)
    return torch.from_numpy(labels_np[tuple(indices)]).to(labels.device)


def class_balanced_mean(entropy: torch.Tensor, region: torch.Tensor, owner: torch.Tensor) -> dict[int, float]:
    """Mean entropy over each class's share of the region; a small structure weighs as much as a large one.

    One pass of ``bincount`` over the region (on the tensors' device) gives every class's sum and count.
    """
    owners = owner[region].long()
    counts = torch.bincount(owners)
    sums = torch.bincount(owners, weights=entropy[region].double(), minlength=counts.numel())
    present = torch.nonzero(counts[1:]).flatten() + 1
    means = (sums[present] / counts[present]).tolist()
    return {int(value): float(mean) for value, mean in zip(present.tolist(), means)}


def top_fraction_mean(entropy: torch.Tensor, fraction: float) -> float:
    count = max(1, int(round(fraction * entropy.numel())))
    return float(torch.topk(entropy.flatten().float(), count).values.mean())


def anatomical_segmentation_difficulty(
    probabilities: torch.Tensor, entropy: torch.Tensor, config: AsdConfig | None = None
) -> AsdResult:
    """ASD of one case from its (C, x, y, z) probabilities and (x, y, z) normalised entropy."""
    config = config or AsdConfig()
    labels = probabilities.argmax(0)
    threshold = entropy_threshold(entropy, config.threshold_rule, config.histogram_bins)
    region = adaptive_foreground(labels, entropy, config.dilation_voxels, threshold)
    confidence_map = probabilities.max(0).values
    if not region.any():
        return AsdResult(
            top_fraction_mean(entropy, config.fallback_top_fraction),
            threshold,
            0,
            True,
            {},
            float(confidence_map.mean()),
        )
    if (labels > 0).any():
        per_class = class_balanced_mean(entropy, region, nearest_class(labels))
        score = float(np.mean(list(per_class.values())))
    else:  # uncertain voxels but no structure predicted: nothing to balance over
        per_class, score = {}, float(entropy[region].mean())
    return AsdResult(
        score, threshold, int(region.sum()), False, per_class, float(confidence_map[region].mean())
    )
