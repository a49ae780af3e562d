"""Voxel-wise uncertainty of a softmax prediction."""

from __future__ import annotations

import math

import torch


def normalized_entropy(probabilities: torch.Tensor, class_dim: int = 0) -> torch.Tensor:
    """H(v) = -sum_c p_c log p_c / log C, in [0, 1]; 0 log 0 is taken as 0."""
    num_classes = probabilities.shape[class_dim]
    if num_classes < 2:
        raise ValueError("entropy needs at least two classes")
    p = probabilities.float()
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-30)), torch.zeros_like(p))
    return (-plogp.sum(dim=class_dim) / math.log(num_classes)).clamp_(0.0, 1.0)
