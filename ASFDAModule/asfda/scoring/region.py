"""The adaptive foreground region F over which a case's difficulty is measured."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ThresholdRule


def histogram(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts and bin centres of values in [0, 1]."""
    counts = torch.histc(values.float().flatten(), bins=bins, min=0.0, max=1.0)
    centres = (torch.arange(bins, dtype=torch.float32, device=counts.device) + 0.5) / bins
    return counts, centres


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the cut that maximises the between-class variance."""
    counts, centres = histogram(values, bins)
    weights = counts / counts.sum().clamp_min(1)
    omega = torch.cumsum(weights, 0)
    mu = torch.cumsum(weights * centres, 0)
    mu_total = mu[-1]
    between = (mu_total * omega - mu) ** 2 / (omega * (1 - omega)).clamp_min(1e-12)
    between[(omega <= 0) | (omega >= 1)] = -1
    best = int(torch.argmax(between))
    return float(centres[best] + 0.5 / bins)  # upper edge of the last bin of the lower class


def first_valley_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """UGTST's rule: where the smoothed histogram stops falling after its first peak."""
    counts, centres = histogram(values, bins)
    smooth = F.avg_pool1d(counts[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    peak = int(torch.argmax(smooth[: max(2, bins // 2)]))
    for index in range(peak + 1, bins - 1):
        if smooth[index] <= smooth[index + 1]:
            return float(centres[index])
    return otsu_threshold(values, bins)


def entropy_threshold(entropy: torch.Tensor, rule: ThresholdRule, bins: int = 256) -> float:
    if rule is ThresholdRule.FIRST_PEAK:
        return first_valley_threshold(entropy, bins)
    return otsu_threshold(entropy, bins)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of a 3D mask by a cube of half-width ``radius``."""
    if radius <= 0:
        return mask.bool()
    kernel = 2 * radius + 1
    return F.max_pool3d(mask[None, None].float(), kernel, stride=1, padding=radius)[0, 0] > 0


def adaptive_foreground(
    labels: torch.Tensor, entropy: torch.Tensor, dilation: int, threshold: float
) -> torch.Tensor:
    """F: the predicted foreground dilated by ``dilation`` voxels, plus voxels with entropy > threshold."""
    return dilate(labels > 0, dilation) | (entropy > threshold)
