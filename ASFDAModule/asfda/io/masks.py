"""Checks on a submitted mask before it may enter the labelled set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import MaskError, VolumeReadError
from .volumes import Geometry, read_volume


def validated_mask(
    mask_path: str | Path, volume: sitk.Image, labels: dict[int, str], **read_options
) -> sitk.Image:
    """Read ``mask_path`` and check it against its volume and the model's labels.

    The geometry must match (a mask drawn on another grid would teach the model the wrong anatomy), every
    value must be a label the model knows, and at least one foreground voxel must be there (an empty mask is
    more likely a slip than an annotation). ``read_options`` go to :func:`read_volume` (``data_roots``,
    ``max_voxels``). Returns the mask as an 8-bit label image on the volume's grid.
    """
    mask_path = Path(mask_path)
    try:
        mask = read_volume(mask_path, **read_options)
    except VolumeReadError as error:
        raise MaskError(str(error).split(": ", 1)[-1], mask_path) from error
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise MaskError("expected a single-component label map", mask_path)
    difference = Geometry.of(volume).mismatch(Geometry.of(mask))
    if difference:
        raise MaskError(f"geometry does not match its case: {difference}", mask_path)
    array = sitk.GetArrayViewFromImage(mask)
    if not np.issubdtype(array.dtype, np.integer) and not np.array_equal(array, np.round(array)):
        raise MaskError("label values must be whole numbers", mask_path)
    values = set(np.unique(array).astype(np.int64).tolist())
    unknown = sorted(values - set(labels))
    if unknown:
        known = ", ".join(f"{value}={name}" for value, name in sorted(labels.items()))
        raise MaskError(f"label values {unknown} are not labels of the model ({known})", mask_path)
    if values <= {0}:
        raise MaskError("the mask is empty (background only)", mask_path)
    checked = sitk.Cast(mask, sitk.sitkUInt8)
    checked.CopyInformation(volume)
    return checked
