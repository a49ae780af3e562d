"""From a SimpleITK volume to the tensor a model expects, and back, with MONAI transforms.

SimpleITK keeps LPS world coordinates and (z, y, x) arrays; MONAI keeps RAS affines and channel-first
(x, y, z) tensors. The transforms record what they did, so a prediction made in the model's space is
inverted onto the volume's own grid before it is written next to the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    Orientationd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from ..models.spec import IntensityNorm, ModelSpec

IMAGE, LABEL = "image", "label"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def sitk_affine(image: sitk.Image) -> np.ndarray:
    """The 4x4 RAS affine of a SimpleITK image (index (x, y, z) to RAS millimetres)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ affine


def to_metatensor(image: sitk.Image, dtype: torch.dtype = torch.float32) -> MetaTensor:
    """Channel-first (C, x, y, z) MetaTensor carrying the volume's RAS affine."""
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() == 1:
        array = np.transpose(array, (2, 1, 0))[None]
    else:  # (z, y, x, c) -> (c, x, y, z)
        array = np.transpose(array, (3, 2, 1, 0))
    tensor = torch.as_tensor(np.ascontiguousarray(array), dtype=dtype)
    return MetaTensor(tensor, affine=torch.as_tensor(sitk_affine(image)), meta={"space": "RAS"})


def preprocessing(spec: ModelSpec) -> Compose:
    """The model's preprocessing as MONAI dictionary transforms on ``image`` and, when present, ``label``."""
    keys = (IMAGE, LABEL)
    transforms = [EnsureTyped(keys=keys, allow_missing_keys=True, track_meta=True)]
    if spec.orientation:
        transforms.append(
            Orientationd(keys=keys, axcodes=spec.orientation, labels=None, allow_missing_keys=True)
        )
    if spec.spacing:
        transforms.append(
            Spacingd(keys=keys, pixdim=spec.spacing, mode=("bilinear", "nearest"), allow_missing_keys=True)
        )
    if spec.intensity in (IntensityNorm.ZSCORE_NONZERO, IntensityNorm.ZSCORE):
        nonzero = spec.intensity is IntensityNorm.ZSCORE_NONZERO
        transforms.append(NormalizeIntensityd(keys=IMAGE, nonzero=nonzero, channel_wise=True))
    elif spec.intensity is IntensityNorm.RANGE:
        a_min, a_max, b_min, b_max = spec.intensity_range
        transforms.append(ScaleIntensityRanged(IMAGE, a_min, a_max, b_min, b_max, clip=spec.intensity_clip))
    elif spec.intensity is IntensityNorm.PERCENTILE:
        transforms.append(
            ScaleIntensityRangePercentilesd(
                keys=IMAGE, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True
            )
        )
    elif spec.intensity is IntensityNorm.TRANSFORMS:
        transforms.extend(intensity_transform(step) for step in spec.intensity_transforms or [])
    return Compose(transforms)


def intensity_transform(step: dict):
    """One of a bundle's intensity transforms (``{"name": "ScaleIntensity", "kwargs": {...}}``), rebuilt as
    its MONAI dictionary transform on the image."""
    import monai.transforms

    factory = getattr(monai.transforms, f"{step['name']}d", None)
    if factory is None:
        raise ValueError(f"no MONAI intensity transform {step['name']}d")
    return factory(keys=IMAGE, **step.get("kwargs", {}))


@dataclass
class ModelSpaceCase:
    """A case resampled into the model's space, with the transform that can take results back."""

    image: MetaTensor
    label: MetaTensor | None
    transform: Compose

    def to_source_grid(self, model_space: torch.Tensor) -> torch.Tensor:
        """Invert the spatial preprocessing on a (C, ...) tensor that lies on this case's model grid.

        Probabilities are inverted with linear interpolation, which gives smoother boundaries on the
        volume's grid than resampling the arg-max.
        """
        carrier = MetaTensor(
            model_space.detach().float().cpu(),
            meta=dict(self.image.meta),  # carries the affine
            applied_operations=list(self.image.applied_operations),
        )
        return self.transform.inverse({IMAGE: carrier})[IMAGE].as_tensor()


def preprocess_case(image: sitk.Image, spec: ModelSpec, label: sitk.Image | None = None) -> ModelSpaceCase:
    """The case (and its label map) in the model's space."""
    data = {IMAGE: to_metatensor(image)}
    if label is not None:
        data[LABEL] = to_metatensor(label)
    transform = preprocessing(spec)
    data = transform(data)
    return ModelSpaceCase(data[IMAGE], data.get(LABEL), transform)
