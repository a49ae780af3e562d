"""Acquisition protocols of a mixed target site: what differs between two hospital scans of the same kind.

A :class:`Protocol` is drawn per case from its own seed: contrast variant (T2, PD-like, FLAIR-like), skull
present or stripped, slice thickness 1 to 6 mm along one axis (anisotropic voxels), a partial field of view,
bias field, gamma, noise and a motion-like ghost. :func:`apply_protocol` turns a reference volume on the
isotropic base grid into the case as that protocol would have acquired it, labels resampled with it. Pure
functions of (references, protocol); MONAI random transforms for the anatomical and appearance variation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
import SimpleITK as sitk


class Contrast(str, Enum):
    T2 = "t2"
    PD_LIKE = "pd_like"  # T2 blended with T1: grey/white contrast low, CSF moderately bright
    FLAIR_LIKE = "flair_like"  # T2 with fluid suppressed: CSF dark, tissue still T2-weighted


@dataclass(frozen=True)
class ProtocolRanges:
    """The spread of protocols at the site; every field of a drawn :class:`Protocol` lies in these ranges."""

    contrast_probabilities: tuple[float, float, float] = (0.5, 0.25, 0.25)  # T2, PD-like, FLAIR-like
    skull_stripped_probability: float = 0.5
    slice_thicknesses_mm: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    partial_fov_probability: float = 0.3
    fov_kept_range: tuple[float, float] = (0.6, 0.9)  # fraction of the extent kept along the cut axis
    bias_range: tuple[float, float] = (0.0, 0.5)
    gamma_range: tuple[float, float] = (0.65, 1.5)
    noise_range: tuple[float, float] = (0.0, 0.08)
    motion_probability: float = 0.25
    ghost_range: tuple[float, float] = (0.05, 0.2)  # strength of the phase-encode ghost
    max_rotation_deg: float = 12.0
    max_scaling: float = 0.12
    elastic_displacement_mm: float = 3.0
    elastic_sigma_mm: float = 15.0


@dataclass(frozen=True)
class Protocol:
    contrast: str
    skull_stripped: bool
    slice_thickness_mm: float
    slice_axis: int  # SimpleITK (x, y, z) axis with thick slices
    fov_kept: float  # 1.0: the whole head
    fov_axis: int
    fov_keep_low_side: bool
    bias: float
    gamma: float
    noise: float
    ghost: float  # 0.0: no motion
    mix: float  # PD-like: weight of T2 in the blend; FLAIR-like: fluid suppression

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        skull = "stripped" if self.skull_stripped else "skull"
        parts = [self.contrast, skull, f"{self.slice_thickness_mm:g}mm"]
        if self.fov_kept < 1.0:
            parts.append(f"fov{self.fov_kept:.2f}")
        if self.ghost > 0:
            parts.append("motion")
        return "/".join(parts)


def draw_protocol(seed: int, ranges: ProtocolRanges, base_spacing_mm: float) -> Protocol:
    """One case's protocol; thickness never finer than the base grid (a thin slice adds nothing there)."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(ranges.contrast_probabilities, dtype=np.float64)
    contrast = list(Contrast)[int(rng.choice(3, p=weights / weights.sum()))]
    partial = rng.random() < ranges.partial_fov_probability
    motion = rng.random() < ranges.motion_probability
    return Protocol(
        contrast=contrast.value,
        skull_stripped=bool(rng.random() < ranges.skull_stripped_probability),
        slice_thickness_mm=float(max(rng.choice(ranges.slice_thicknesses_mm), base_spacing_mm)),
        slice_axis=int(rng.integers(3)),
        fov_kept=float(rng.uniform(*ranges.fov_kept_range)) if partial else 1.0,
        fov_axis=int(rng.integers(3)),
        fov_keep_low_side=bool(rng.random() < 0.5),
        bias=float(rng.uniform(*ranges.bias_range)),
        gamma=float(rng.uniform(*ranges.gamma_range)),
        noise=float(rng.uniform(*ranges.noise_range)),
        ghost=float(rng.uniform(*ranges.ghost_range)) if motion else 0.0,
        mix=float(rng.uniform(0.5, 0.75) if contrast is Contrast.PD_LIKE else rng.uniform(0.7, 0.95)),
    )


def contrast_volume(t1: np.ndarray, t2: np.ndarray, head: np.ndarray, protocol: Protocol) -> np.ndarray:
    """The protocol's contrast from the T1 and T2 references (both brain 99th percentile = 1), masked to
    ``head`` (the skull-stripped or the whole-head support)."""
    contrast = Contrast(protocol.contrast)
    if contrast is Contrast.T2:
        volume = t2
    elif contrast is Contrast.PD_LIKE:
        volume = protocol.mix * t2 + (1.0 - protocol.mix) * t1
    else:  # fluid: bright on T2 and dark on T1
        fluid = np.clip((t2 - t1) / 0.5, 0.0, 1.0)
        volume = t2 * (1.0 - protocol.mix * fluid)
    return (volume * head).astype(np.float32)


def appearance_transform(protocol: Protocol, ranges: ProtocolRanges, spacing_mm: float, seed: int):
    """MONAI random anatomy (affine + elastic) and the protocol's own bias, gamma and noise."""
    from monai.transforms import Compose, RandAdjustContrastd, RandBiasFieldd, RandGaussianNoised

    from .dataset import anatomical_deformation

    transform = Compose(
        [
            anatomical_deformation(
                spacing_mm,
                ranges.elastic_sigma_mm,
                ranges.elastic_displacement_mm,
                ranges.max_rotation_deg,
                ranges.max_scaling,
                max_translation_mm=6.0,
            ),
            RandBiasFieldd(keys="image", prob=1.0, degree=3, coeff_range=(protocol.bias, protocol.bias)),
            RandAdjustContrastd(keys="image", prob=1.0, gamma=(protocol.gamma, protocol.gamma)),
            RandGaussianNoised(keys="image", prob=1.0 if protocol.noise > 0 else 0.0, std=protocol.noise),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def motion_ghost(volume: np.ndarray, strength: float, phase_axis: int) -> np.ndarray:
    """A motion-like ghost: every other phase-encode line of k-space scaled by (1 - 2 strength), which adds
    a copy of the image shifted by half the field of view (periodic motion between lines)."""
    if strength <= 0:
        return volume
    spectrum = np.fft.fftn(volume)
    lines = np.ones(volume.shape[phase_axis])
    lines[1::2] = 1.0 - 2.0 * strength
    shape = [1, 1, 1]
    shape[phase_axis] = -1
    ghosted = np.real(np.fft.ifftn(spectrum * lines.reshape(shape)))
    return np.clip(ghosted, 0.0, None).astype(np.float32)


def thick_slices(
    image: sitk.Image, label: sitk.Image, thickness_mm: float, axis: int
) -> tuple[sitk.Image, sitk.Image]:
    """Resample to slices ``thickness_mm`` thick along ``axis`` (a Gaussian slice profile first), labels by
    nearest neighbour onto the same anisotropic grid."""
    spacing = list(image.GetSpacing())
    if thickness_mm <= spacing[axis] + 1e-6:
        return image, label
    from scipy.ndimage import gaussian_filter1d

    sigma_voxels = 0.4 * math.sqrt(thickness_mm**2 - spacing[axis] ** 2) / spacing[axis]
    # numpy axes are (z, y, x): SimpleITK axis a is numpy axis 2 - a.
    blurred = gaussian_filter1d(sitk.GetArrayFromImage(image).astype(np.float32), sigma_voxels, axis=2 - axis)
    smoothed = sitk.GetImageFromArray(blurred)
    smoothed.CopyInformation(image)
    size = list(image.GetSize())
    new_spacing = list(spacing)
    new_spacing[axis] = thickness_mm
    size[axis] = max(1, int(round(size[axis] * spacing[axis] / thickness_mm)))
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(new_spacing)
    grid.SetDirection(image.GetDirection())
    # Keep the first slice's outer edge where the original's was.
    first = [0.0, 0.0, 0.0]
    first[axis] = -0.5 + 0.5 * thickness_mm / spacing[axis]
    grid.SetOrigin(image.TransformContinuousIndexToPhysicalPoint(first))
    resampled = sitk.Resample(smoothed, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    labels = sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return resampled, labels


def crop_field_of_view(
    image: sitk.Image, label: sitk.Image, kept: float, axis: int, keep_low_side: bool
) -> tuple[sitk.Image, sitk.Image]:
    """Keep a fraction of the extent along one axis (a partial field of view); geometry stays physical."""
    if kept >= 1.0:
        return image, label
    size = image.GetSize()[axis]
    keep = max(1, int(round(kept * size)))
    start = 0 if keep_low_side else size - keep
    index = [slice(None)] * 3
    index[axis] = slice(start, start + keep)
    return image[tuple(index)], label[tuple(index)]
