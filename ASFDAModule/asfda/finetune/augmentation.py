"""Intensity augmentation for fine-tuning: a weak view for labelled patches and the teacher, a strong view
for the student on unlabelled patches (FixMatch-style consistency). Intensity only, so the teacher's
pseudo-label stays aligned voxel for voxel with the student's input."""

from __future__ import annotations

import torch
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandBiasFieldd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from ..io.preprocessing import IMAGE


def weak_augmentation(seed: int = 0) -> Compose:
    """Mild contrast, bias and noise changes, like the protocol spread of a target site."""
    transform = Compose(
        [
            RandAdjustContrastd(keys=IMAGE, prob=0.5, gamma=(0.8, 1.25)),
            RandBiasFieldd(keys=IMAGE, prob=0.3, coeff_range=(0.0, 0.2)),
            RandScaleIntensityd(keys=IMAGE, prob=0.5, factors=0.1),
            RandGaussianNoised(keys=IMAGE, prob=0.3, std=0.05),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def strong_augmentation(seed: int = 0) -> Compose:
    """Heavier intensity changes (gamma, bias, blur, shift, noise) for the student's view."""
    transform = Compose(
        [
            RandAdjustContrastd(keys=IMAGE, prob=1.0, gamma=(0.6, 1.6)),
            RandBiasFieldd(keys=IMAGE, prob=0.8, coeff_range=(0.1, 0.4)),
            RandGaussianSmoothd(
                keys=IMAGE, prob=0.5, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0)
            ),
            RandShiftIntensityd(keys=IMAGE, prob=0.8, offsets=0.3),
            RandGaussianNoised(keys=IMAGE, prob=0.8, std=0.15),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def augment_batch(images: torch.Tensor, transform: Compose) -> torch.Tensor:
    """Apply a dictionary transform to each (C, D, H, W) item of a batch; returns a new batch tensor.

    RandAdjustContrast needs non-negative input, so each item is shifted to a zero minimum and back.
    """
    out = []
    for image in images:
        low = image.min()
        augmented = transform({IMAGE: (image - low).detach().cpu()})[IMAGE]
        # a plain tensor: a MetaTensor batch makes every CPU training step 10-15 % slower (its dispatch)
        out.append(torch.as_tensor(augmented).as_subclass(torch.Tensor).to(images.device, images.dtype) + low)
    return torch.stack(out)
