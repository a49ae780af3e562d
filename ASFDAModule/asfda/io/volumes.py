"""Reading and writing volumes with SimpleITK, keeping their geometry exact.

Slicer shows a prediction on top of its volume only if spacing, origin and direction match to the last
digit, so every write copies the geometry of the volume it was computed from.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import StoreError, VolumeReadError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd")


def volume_suffix(path: str | Path) -> str | None:
    """The volume extension of ``path`` (``.nii.gz`` counts as one), or None if it is not a volume file."""
    name = Path(path).name.lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if name.endswith(suffix)), None)


def case_name(path: str | Path) -> str:
    """File name without its volume extension: ``brain_01.nii.gz`` -> ``brain_01``."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else Path(path).stem


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a volume in LPS world coordinates, as SimpleITK and Slicer's storage nodes keep it."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def mismatch(self, other: Geometry, tolerance: float = 1e-4) -> str | None:
        """A sentence saying how ``other`` differs from this grid, or None when they match."""
        if self.size != other.size:
            return f"size {other.size} differs from the volume's {self.size}"
        for name in ("spacing", "origin", "direction"):
            mine, theirs = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(mine, theirs, atol=tolerance * max(1.0, float(np.abs(mine).max()))):
                theirs_text, mine_text = tuple(np.round(theirs, 4)), tuple(np.round(mine, 4))
                return f"{name} {theirs_text} differs from the volume's {mine_text}"
        return None


def read_volume(path: str | Path, *, check_finite: bool = True) -> sitk.Image:
    """Read a volume, refusing files that are missing, unreadable, not 3D, empty or non-finite."""
    path = Path(path)
    if not path.is_file():
        raise VolumeReadError("file not found", path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise VolumeReadError(f"not a readable volume ({first_line})", path) from error
    if image.GetDimension() != 3:
        raise VolumeReadError(f"expected a 3D volume, found {image.GetDimension()}D", path)
    if min(image.GetSize()) < 1 or image.GetNumberOfPixels() == 0:
        raise VolumeReadError("the volume has no voxels", path)
    if check_finite:
        array = sitk.GetArrayViewFromImage(image)
        if not np.isfinite(array).all():
            raise VolumeReadError("the volume contains NaN or infinite values", path)
    return image


def content_hash(image: sitk.Image, length: int = 16) -> str:
    """A stable case id: the same voxels on the same grid give the same id, whatever the file format."""
    digest = hashlib.sha256()
    geometry = Geometry.of(image)
    digest.update(
        repr(
            (
                geometry.size,
                np.round(geometry.spacing, 5).tolist(),
                np.round(geometry.origin, 4).tolist(),
                np.round(geometry.direction, 5).tolist(),
            )
        ).encode()
    )
    array = np.ascontiguousarray(sitk.GetArrayViewFromImage(image))
    digest.update(str(array.dtype).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:length]


def write_volume(image: sitk.Image, path: str | Path, *, compress: bool = True) -> Path:
    """Write atomically: the file at ``path`` is either the old one or the complete new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = volume_suffix(path) or path.suffix
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(image, temporary, compress)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except (RuntimeError, OSError) as error:
        Path(temporary).unlink(missing_ok=True)
        raise StoreError(f"could not write the volume ({error})", path) from error
    return path


def labelmap_like(array_xyz: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A label image from an (x, y, z) array on the grid of ``reference``."""
    if tuple(array_xyz.shape) != tuple(reference.GetSize()):
        raise ValueError(
            f"label array {array_xyz.shape} does not match the volume size {reference.GetSize()}"
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array_xyz, (2, 1, 0)).astype(np.uint8)))
    image.CopyInformation(reference)
    return image


def add_segment_metadata(labelmap: sitk.Image, labels: dict[int, str]) -> sitk.Image:
    """Segment names in the header, so Slicer opens a ``.seg.nrrd`` with named segments."""
    present = set(np.unique(sitk.GetArrayViewFromImage(labelmap)).tolist())
    for index, (value, name) in enumerate((v, n) for v, n in sorted(labels.items()) if v != 0):
        prefix = f"Segment{index}_"
        labelmap.SetMetaData(prefix + "ID", f"Segment_{value}")
        labelmap.SetMetaData(prefix + "Name", name)
        labelmap.SetMetaData(prefix + "LabelValue", str(value))
        labelmap.SetMetaData(prefix + "Layer", "0")
        labelmap.SetMetaData(prefix + "Tags", f"asfda.present:{int(value in present)}|")
    return labelmap
