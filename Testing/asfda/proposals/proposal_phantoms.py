"""Tiny labelled phantoms for the proposal tests: off-centre ellipsoids (so a rotation is recoverable) with
their own intensities and a smooth texture, moved by known affine maps with SimpleITK."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from asfda.proposals import Case
from asfda.proposals.propagation import to_array, to_image

SIZE = 32
SPACING = (2.0, 2.0, 2.0)
NUM_CLASSES = 4
# (centre in voxels, semi-axes in voxels, class)
BLOBS = (((16, 16, 16), (11, 8, 10), 1), ((11, 13, 17), (4, 3, 5), 2), ((21, 19, 13), (3, 5, 3), 3))


def phantom(seed: int = 0, blobs=BLOBS) -> Case:
    """A head-like volume (0 outside, as in model space) with its label map."""
    grid = np.stack(np.meshgrid(*(np.arange(SIZE),) * 3, indexing="ij")).astype(np.float64)
    labels = np.zeros((SIZE,) * 3, dtype=np.int64)
    for centre, axes, value in blobs:
        inside = sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(3)) <= 1
        labels[inside] = value
    rng = np.random.default_rng(seed)
    texture = to_array(sitk.SmoothingRecursiveGaussian(to_image(rng.normal(size=labels.shape), SPACING), 3.0))
    image = np.where(labels > 0, np.array([0.0, 1.0, 2.5, 4.0])[labels] + 0.5 * texture, 0.0)
    return Case(image.astype(np.float32), SPACING, labels, f"phantom-{seed}")


def moved(case: Case, degrees: float, shift_mm, case_id: str = "moved") -> Case:
    """The case resampled through a rotation about the z axis (around the centre) and a translation."""
    reference = to_image(case.image, case.spacing)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(reference.TransformContinuousIndexToPhysicalPoint([(SIZE - 1) / 2] * 3))
    transform.SetRotation(0.0, 0.0, np.deg2rad(degrees))
    transform.SetTranslation([float(s) for s in shift_mm])
    image = sitk.Resample(reference, reference, transform, sitk.sitkLinear, 0.0)
    labels = sitk.Resample(
        to_image(case.labels.astype(np.float32), case.spacing), reference, transform, sitk.sitkNearestNeighbor
    )
    return Case(to_array(image), case.spacing, np.rint(to_array(labels)).astype(np.int64), case_id)
