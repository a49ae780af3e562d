"""Label propagation: register a labelled support case onto the query and carry its label map across.

Volumes are model-space arrays (x, y, z) of one channel with their voxel spacing; the origin is put at 0
for every case, so the registration starts from the volumes' centres (model-space grids of one dataset
share their spacing and nearly their extent). Registration maximises Mattes mutual information, because
the cases of one session may differ in contrast (T2, PD-like, FLAIR-like in the heterogeneous benchmark):
an affine stage, then a coarse B-spline (about 30 mm between control points). The support's label map is
warped as one-hot class shares with linear interpolation, so that several supports fuse as soft votes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import SimpleITK as sitk

from ..errors import CancelledError

ProgressCallback = Callable[[int, int], None]  # (registrations done, registrations in all)
CancelCheck = Callable[[], bool]


class DeformableStage(str, Enum):
    """What follows the affine stage."""

    NONE = "none"  # affine only
    BSPLINE = "bspline"


@dataclass(frozen=True)
class RegistrationSettings:
    """Bounded so that one registration of a 59x72x59 volume at 3 mm takes a few seconds on one CPU core:
    3.1 s of CPU measured (1.2 s for the affine stage alone), 32^3 phantoms well under a second."""

    deformable: DeformableStage = DeformableStage.BSPLINE
    affine_iterations: int = 200  # a cap: the optimiser stops earlier once its steps shrink (15-190 here)
    affine_shrink_factors: tuple[int, ...] = (4, 2, 1)
    bspline_iterations: int = 20
    # the half-resolution grid only: a full-resolution level with a 30 mm mesh took 16 s a pair, no better
    bspline_shrink_factors: tuple[int, ...] = (2,)
    control_point_spacing_mm: float = 40.0
    smoothing_sigma_mm: float = 3.0  # at every level but the full-resolution one
    histogram_bins: int = 32
    # voxels of the (shrunk) query drawn at random (seeded) for the metric, per level: all of a coarse level
    affine_samples: int = 20000
    bspline_samples: int = 5000
    brain_margin_voxels: int = 2  # the support's labelled region, dilated, is where the metric looks
    seed: int = 7
    threads: int = 1


@dataclass(frozen=True, eq=False)  # arrays: compare their contents, not the records
class Case:
    """A case in the model's space: its volume, voxel spacing in mm and, for a support, its label map."""

    image: np.ndarray  # (x, y, z)
    spacing: tuple[float, float, float]
    labels: np.ndarray | None = None  # (x, y, z) class values 0..C-1
    case_id: str = ""


@dataclass(frozen=True, eq=False)  # arrays: compare their contents, not the records
class WarpedSupport:
    """A support case carried onto the query's grid."""

    case_id: str
    image: np.ndarray  # (x, y, z) the support's volume, warped
    probabilities: np.ndarray  # (C, x, y, z) its one-hot label map, warped linearly
    similarity: float  # normalised mutual information with the query after the affine stage, in [0, 1]
    seconds: float  # the registration's wall time

    @property
    def labels(self) -> np.ndarray:
        return self.probabilities.argmax(0)


def to_image(array: np.ndarray, spacing: Sequence[float]) -> sitk.Image:
    """A float SimpleITK image from an (x, y, z) array, origin 0, identity direction."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0)), dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


def to_array(image: sitk.Image) -> np.ndarray:
    """The (x, y, z) array of a scalar image or the (C, x, y, z) array of a vector image."""
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() == 1:
        return np.transpose(array, (2, 1, 0))
    return np.transpose(array, (3, 2, 1, 0))


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, x, y, z) float32 indicator of each class."""
    labels = np.asarray(labels)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"label values {labels.min()}..{labels.max()} outside 0..{num_classes - 1}")
    return (np.arange(num_classes)[:, None, None, None] == labels[None]).astype(np.float32)


def normalized_mutual_information(first: np.ndarray, second: np.ndarray, bins: int = 32) -> float:
    """Studholme's (H(A) + H(B)) / H(A, B) - 1 over the voxels where either volume is non-zero, in [0, 1].

    Mutual information rather than correlation, so that a support of another contrast ranks by anatomy.
    """
    inside = (first != 0) | (second != 0)
    if inside.sum() < 2:
        return 0.0
    joint, _, _ = np.histogram2d(first[inside], second[inside], bins=bins)
    joint = joint / joint.sum()

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_joint = entropy(joint)
    if h_joint == 0:
        return 0.0
    return float(np.clip((entropy(joint.sum(1)) + entropy(joint.sum(0))) / h_joint - 1.0, 0.0, 1.0))


def _registration(
    settings: RegistrationSettings,
    fixed: sitk.Image,
    shrink_factors: Sequence[int],
    samples: int,
    moving_mask: sitk.Image | None,
) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(settings.threads)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = [fixed.GetNumberOfPixels() / factor**3 for factor in shrink_factors]
    method.SetMetricSamplingPercentagePerLevel([min(1.0, samples / n) for n in voxels], settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(list(shrink_factors))
    method.SetSmoothingSigmasPerLevel([settings.smoothing_sigma_mm if f > 1 else 0.0 for f in shrink_factors])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if moving_mask is not None:
        # a support with skull and one without, or a partial field of view: compare the labelled anatomy
        method.SetMetricMovingMask(moving_mask)
    return method


def labelled_region(support: Case, margin_voxels: int) -> sitk.Image:
    """The support's foreground, dilated by a margin, as a mask on its grid."""
    region = to_image((support.labels > 0).astype(np.float32), support.spacing) > 0.5
    return sitk.BinaryDilate(region, [margin_voxels] * 3) if margin_voxels > 0 else region


def affine_transform(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings,
    moving_mask: sitk.Image | None = None,
) -> sitk.Transform:
    """The affine map from the query's (fixed) space into the support's (moving) space."""
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    method = _registration(
        settings, fixed, settings.affine_shrink_factors, settings.affine_samples, moving_mask
    )
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=4.0, minStep=1e-3, numberOfIterations=settings.affine_iterations, relaxationFactor=0.6
    )
    # a step of 1 in any parameter moves a voxel by about 1 mm: rotations and translations balanced
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed, moving)


def bspline_transform(
    fixed: sitk.Image,
    moving: sitk.Image,
    affine: sitk.Transform,
    settings: RegistrationSettings,
    moving_mask: sitk.Image | None = None,
) -> sitk.Transform:
    """A coarse B-spline on top of ``affine``; returns the composite (affine, then B-spline) map."""
    physical = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
    mesh = [max(1, int(round(extent / settings.control_point_spacing_mm))) for extent in physical]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    method = _registration(
        settings, fixed, settings.bspline_shrink_factors, settings.bspline_samples, moving_mask
    )
    method.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=settings.bspline_iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=2 * settings.bspline_iterations,
    )
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(bspline, inPlace=True)
    method.Execute(fixed, moving)
    return sitk.CompositeTransform([affine, bspline])


def _warp(moving: sitk.Image, fixed: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    return sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, moving.GetPixelID())


def _checked_support(support: Case, num_classes: int) -> np.ndarray:
    if support.labels is None:
        raise ValueError(f"support case {support.case_id or '?'} has no label map")
    if tuple(support.labels.shape) != tuple(support.image.shape):
        raise ValueError(
            f"support case {support.case_id or '?'}: label map {support.labels.shape} "
            f"does not match its volume {support.image.shape}"
        )
    return one_hot(support.labels, num_classes)


def _finish(support, fixed, moving, transform, similarity, seconds, num_classes) -> WarpedSupport:
    shares = _checked_support(support, num_classes)
    vector = sitk.Compose([to_image(channel, support.spacing) for channel in shares])
    probabilities = to_array(_warp(vector, fixed, transform))
    # outside the support's field of view every class share is 0: call it background
    probabilities[0] += np.clip(1.0 - probabilities.sum(0), 0.0, 1.0)
    return WarpedSupport(
        case_id=support.case_id,
        image=to_array(_warp(moving, fixed, transform)),
        probabilities=probabilities / probabilities.sum(0, keepdims=True),
        similarity=similarity,
        seconds=seconds,
    )


@dataclass
class _Affine:
    support: Case
    moving: sitk.Image
    mask: sitk.Image
    transform: sitk.Transform
    similarity: float
    seconds: float


def _affine_stage(fixed: sitk.Image, query: Case, support: Case, settings) -> _Affine:
    started = time.perf_counter()
    moving = to_image(support.image, support.spacing)
    mask = labelled_region(support, settings.brain_margin_voxels)
    transform = affine_transform(fixed, moving, settings, mask)
    warped = to_array(_warp(moving, fixed, transform))
    similarity = normalized_mutual_information(query.image, warped, settings.histogram_bins)
    return _Affine(support, moving, mask, transform, similarity, time.perf_counter() - started)


def _deformable_stage(fixed: sitk.Image, affine: _Affine, settings, num_classes: int) -> WarpedSupport:
    started = time.perf_counter()
    transform = affine.transform
    if settings.deformable is DeformableStage.BSPLINE:
        transform = bspline_transform(fixed, affine.moving, affine.transform, settings, affine.mask)
    seconds = affine.seconds + time.perf_counter() - started  # both stages; warping the maps is not counted
    return _finish(affine.support, fixed, affine.moving, transform, affine.similarity, seconds, num_classes)


def propagate(
    query: Case, support: Case, num_classes: int, settings: RegistrationSettings | None = None
) -> WarpedSupport:
    """Register ``support`` onto ``query`` and warp its volume and label map onto the query's grid."""
    return propagate_all(query, [support], num_classes, settings)[0]


def propagate_all(
    query: Case,
    supports: Sequence[Case],
    num_classes: int,
    settings: RegistrationSettings | None = None,
    max_supports: int | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> list[WarpedSupport]:
    """Every support (or the ``max_supports`` most similar after the affine stage) warped onto the query.

    Like FATE-SAM's support selection: all supports are aligned affinely (cheap), ranked by normalised
    mutual information with the query, and only the best go through the deformable stage. Returned best
    first.
    """
    settings = settings or RegistrationSettings()
    if not supports:
        raise ValueError("propagation needs at least one labelled support case")
    for support in supports:
        _checked_support(support, num_classes)
    fixed = to_image(query.image, query.spacing)
    keep = len(supports) if max_supports is None else max(1, min(max_supports, len(supports)))
    total, done = len(supports) + keep, 0
    affines = []
    for support in supports:
        if cancelled is not None and cancelled():
            raise CancelledError("propagation cancelled")
        affines.append(_affine_stage(fixed, query, support, settings))
        done += 1
        if progress is not None:
            progress(done, total)
    affines.sort(key=lambda affine: -affine.similarity)
    warped = []
    for affine in affines[:keep]:
        if cancelled is not None and cancelled():
            raise CancelledError("propagation cancelled")
        warped.append(_deformable_stage(fixed, affine, settings, num_classes))
        done += 1
        if progress is not None:
            progress(done, total)
    return warped
