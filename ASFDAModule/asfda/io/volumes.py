"""Reading and writing volumes with SimpleITK, keeping their geometry exact.

Slicer shows a prediction on top of its volume only if spacing, origin and direction match to the last
digit, so every write copies the geometry of the volume it was computed from.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import DiskFullError, StoreError, VolumeReadError, no_space_message
from .headers import (
    DEFAULT_MAX_VOXELS,
    check_compressed_stream,
    check_nifti_finite,
    confine_data_files,
)

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
                # Plain floats: a NumPy 2 repr (np.float64(2.0)) is noise in a message for people.
                theirs_text = tuple(float(x) for x in np.round(theirs, 4))
                mine_text = tuple(float(x) for x in np.round(mine, 4))
                return f"{name} {theirs_text} differs from the volume's {mine_text}"
        return None


def read_volume(
    path: str | Path,
    *,
    check_finite: bool = True,
    data_roots: Sequence[Path] | None = None,
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    components: int | None = 1,
) -> sitk.Image:
    """Read a volume, refusing files that are missing, unreadable, truncated, not 3D, empty, too large,
    non-finite, or with another number of components than ``components`` (None: any).

    ``data_roots`` confines the data file a detached NRRD / MetaImage header names (``()``: none allowed,
    ``None``: anywhere). The header is read first: size and components are checked before the voxels are
    decoded, so an 800^3 volume in a small ``.nii.gz`` never reaches memory.
    """
    path = Path(path)
    if not path.is_file():
        raise VolumeReadError("file not found", path)
    confine_data_files(path, data_roots)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise VolumeReadError(f"not a readable volume ({_last_line(error)})", path) from error
    size, channels = reader.GetSize(), reader.GetNumberOfComponents()
    stacked = reader.GetDimension() == 4 and channels == 1 and components not in (None, 1)
    if stacked:  # a 4-D file, the channels along its 4th axis (BraTS's T1, T1c, T2, FLAIR)
        size, channels = size[:3], size[3]
    elif reader.GetDimension() != 3:
        raise VolumeReadError(f"expected a 3D volume, found {reader.GetDimension()}D", path)
    if components is not None and channels != components:
        raise VolumeReadError(
            f"the volume has {channels} channel{'s' if channels > 1 else ''} per voxel; the model takes "
            f"{components}"
            + (
                " (give a case as one 4-D or vector file, or as its co-registered channel volumes: "
                "asfda add --channels A B ...)"
                if components > 1
                else ""
            ),
            path,
        )
    voxels = int(np.prod(size, dtype=np.int64)) * channels
    if max_voxels is not None and voxels > max_voxels:
        raise VolumeReadError(
            f"the volume holds {voxels / 2**20:.1f} million voxels ({' x '.join(map(str, size))}), more "
            f"than the limit of {max_voxels / 2**20:.1f} million (ASFDA_MAX_MEGAVOXELS, --max-megavoxels)",
            path,
        )
    check_compressed_stream(path)
    if check_finite and volume_suffix(path) in (".nii", ".nii.gz"):
        check_nifti_finite(path)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise VolumeReadError(f"not a readable volume ({_last_line(error)})", path) from error
    if stacked:
        image = stacked_to_vector(image)
    if min(image.GetSize()) < 1 or image.GetNumberOfPixels() == 0:
        raise VolumeReadError("the volume has no voxels", path)
    if check_finite:
        array = sitk.GetArrayViewFromImage(image)
        if not np.isfinite(array).all():
            raise VolumeReadError("the volume contains NaN or infinite values", path)
    return image


def stacked_to_vector(image: sitk.Image) -> sitk.Image:
    """A 4-D image, channels along its last axis, as a 3-D image with one component a channel."""
    size = list(image.GetSize())
    channels = [sitk.Extract(image, size[:3] + [0], [0, 0, 0, c]) for c in range(size[3])]
    return sitk.Compose(channels)


def compose_channels(paths: Sequence[str | Path], **read_options) -> sitk.Image:
    """One case from its co-registered channel volumes (same grid each), as a vector image in that order."""
    images = [read_volume(path, **read_options) for path in paths]
    first = images[0]
    for path, image in zip(paths[1:], images[1:]):
        same = image.GetSize() == first.GetSize() and all(
            np.allclose(a, b, atol=1e-4)
            for a, b in (
                (image.GetSpacing(), first.GetSpacing()),
                (image.GetOrigin(), first.GetOrigin()),
                (image.GetDirection(), first.GetDirection()),
            )
        )
        if not same:
            raise VolumeReadError(
                f"not on the grid of {Path(paths[0]).name}: channels must be co-registered", path
            )
    return sitk.Compose([sitk.Cast(image, sitk.sitkFloat32) for image in images])


def _last_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else "unknown reason"


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
    """Write atomically and verified: the file at ``path`` is either the old one or the complete new one.

    SimpleITK does not report a short write (a full disk leaves a 0-byte or truncated file and no error), so
    the temporary file is read back and compared voxel for voxel before it replaces anything.
    """
    from ..session.faults import fault_point
    from ..session.files import fsync_directory

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = volume_suffix(path) or path.suffix
    from ..session.temporaries import temporary_prefix

    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(image, temporary, compress)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        fault_point(f"write:{path.name}")
        _verify_written(image, Path(temporary), path)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except (RuntimeError, OSError, StoreError) as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, StoreError):
            raise
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(no_space_message(path), path) from error
        raise StoreError(f"could not write the volume ({error})", path) from error
    return path


def _verify_written(image: sitk.Image, temporary: Path, path: Path) -> None:
    """The written file reads back as ``image`` (same grid, same voxels), else DiskFullError / StoreError."""
    try:
        if temporary.stat().st_size == 0:
            raise VolumeReadError("the written file is empty", temporary)
        check_compressed_stream(temporary)
        back = sitk.ReadImage(str(temporary))
        written, wanted = sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)
        same = Geometry.of(back).mismatch(Geometry.of(image)) is None and np.array_equal(
            written, wanted, equal_nan=written.dtype.kind in "fc"
        )
    except (RuntimeError, VolumeReadError) as error:
        same, reason = False, str(error)
    else:
        reason = "it reads back with other voxels"
    if same:
        return
    if _disk_nearly_full(path, image):
        raise DiskFullError(no_space_message(path), path)
    raise StoreError(f"the written file did not read back intact ({reason}); nothing was replaced", path)


def _disk_nearly_full(path: Path, image: sitk.Image) -> bool:
    try:
        stats = os.statvfs(path.parent)
    except (OSError, AttributeError):
        return True  # no way to tell: a short write is nearly always a full disk
    needed = image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * 8
    return stats.f_bavail * stats.f_frsize < max(needed, 1 << 20)


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
