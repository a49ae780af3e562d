"""DKD, Diversified Knowledge Divergence: how far a case lies from what the pretrained model knows.

Class prototypes mu_c(x) = sum_v p_c(v) g(v) / sum_v p_c(v) are accumulated window by window during
sliding-window inference, so the full-resolution feature map g is never held.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prototypes(probabilities: torch.Tensor, features: torch.Tensor, weights: torch.Tensor | None = None):
    """(C, K) prototypes and (C,) class masses from (C, *S) probabilities and (K, *S) features, at once.

    ``weights`` (*S) counts each voxel's share, e.g. 1/number of windows covering it.
    """
    accumulator = PrototypeAccumulator(probabilities.shape[0], features.shape[0])
    accumulator.add(probabilities, features, weights)
    return accumulator.prototypes(), accumulator.mass.float()


def accumulation_dtype(device: torch.device | str) -> torch.dtype:
    """float64 where the device has it (Apple's MPS does not)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


class PrototypeAccumulator:
    """Running sums of p_c(v) g(v) and p_c(v), in float64 so the order of windows does not matter.

    The sums live on ``device`` (the model's), so a sliding-window pass never copies a window to the host.
    """

    def __init__(self, num_classes: int, num_features: int, device: torch.device | str = "cpu"):
        dtype = accumulation_dtype(device)
        self.weighted_features = torch.zeros(num_classes, num_features, dtype=dtype, device=device)
        self.mass = torch.zeros(num_classes, dtype=dtype, device=device)

    def add(self, probabilities: torch.Tensor, features: torch.Tensor, weights: torch.Tensor | None = None):
        """Add one window: (C, *S) probabilities, (K, *S') features; probabilities are pooled to S'."""
        if probabilities.shape[1:] != features.shape[1:]:
            probabilities = F.adaptive_avg_pool3d(probabilities[None].float(), features.shape[1:])[0]
            if weights is not None:
                weights = F.adaptive_avg_pool3d(weights[None, None].float(), features.shape[1:])[0, 0]
        p = probabilities.reshape(probabilities.shape[0], -1).double()
        if weights is not None:
            p = p * weights.reshape(1, -1).double()
        g = features.reshape(features.shape[0], -1).double()
        self.weighted_features += (p @ g.T).to(self.mass)
        self.mass += p.sum(1).to(self.mass)

    def add_batch(self, probabilities: torch.Tensor, features: torch.Tensor, weights: torch.Tensor):
        """Add a batch of windows at once: (B, C, *S) probabilities, (B, K, *S') features, (B, *S) weights."""
        if probabilities.shape[2:] != features.shape[2:]:
            probabilities = F.adaptive_avg_pool3d(probabilities.float(), features.shape[2:])
            weights = F.adaptive_avg_pool3d(weights[:, None].float(), features.shape[2:])[:, 0]
        dtype = self.mass.dtype
        p = probabilities.flatten(2).to(dtype) * weights.flatten(1).to(dtype)[:, None]
        self.weighted_features += torch.einsum("bcn,bkn->ck", p, features.flatten(2).to(dtype))
        self.mass += p.sum((0, 2))

    def prototypes(self) -> torch.Tensor:
        return (self.weighted_features / self.mass.clamp_min(1e-12)[:, None]).float()


def cosine_gap(target_prototypes: torch.Tensor, class_weights: torch.Tensor, present: torch.Tensor) -> float:
    """mean_c (1 - cos(mu_c, W_c)) over classes that the case contains (mass > 0)."""
    if not present.any():
        return 1.0
    class_weights, present = class_weights.to(target_prototypes.device), present.to(target_prototypes.device)
    cos = F.cosine_similarity(target_prototypes[present].float(), class_weights[present].float(), dim=1)
    return float((1 - cos).mean())


def gaussian_kl(
    mean_t: torch.Tensor, var_t: torch.Tensor, mean_s: torch.Tensor, var_s: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """KL(N(mean_t, var_t) || N(mean_s, var_s)) per channel."""
    var_t, var_s = var_t.double() + eps, var_s.double() + eps
    return 0.5 * (torch.log(var_s / var_t) + (var_t + (mean_t.double() - mean_s.double()) ** 2) / var_s - 1)


def batchnorm_divergence(stats: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> float:
    """Mean over BatchNorm layers and channels of the Gaussian KL from target to running statistics."""
    if not stats:
        return 0.0
    return float(torch.cat([gaussian_kl(*layer) for layer in stats]).mean())


def embedding(target_prototypes: torch.Tensor) -> torch.Tensor:
    """e(x): the L2-normalised concatenation of the class prototypes."""
    return F.normalize(target_prototypes.flatten().float(), dim=0)
