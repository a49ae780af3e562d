"""Volume files written and read on worker threads, from copies the GUI thread took out of MRML.

Qt and MRML belong to the GUI thread, and VTK as some Slicer builds wrap it holds Python's lock while it
writes: a compressed 200x256x256 volume written by an MRML storage node on a worker thread still froze the
GUI thread for 0.40 s (slicer-core). SimpleITK lets go of the lock. So the GUI thread only copies the voxels
and the IJK-to-RAS matrix (a :class:`VolumeSnapshot`, milliseconds), and a worker writes them with SimpleITK;
downloaded volumes are rewritten uncompressed on the worker, so that loading them on the GUI thread is a read.
Files are written beside their destination and renamed: a reader never sees half a volume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .i18n import _
from .Paths import temporaryName

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])  # MRML works in RAS, ITK files in LPS
LOADING_SUFFIX = ".nrrd"  # uncompressed NRRD: the GUI thread reads it without inflating anything


@dataclass
class VolumeSnapshot:
    """A volume's voxels (k, j, i[, component]) and IJK-to-RAS matrix, copied on the GUI thread."""

    array: np.ndarray
    ijkToRas: np.ndarray
    path: Path
    nodeId: str | None = None


def sitkImage(array: np.ndarray, ijkToRas: np.ndarray) -> sitk.Image:
    """The SimpleITK image of an MRML volume's voxels and IJK-to-RAS matrix (spacing folded in)."""
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    ijkToLps = RAS_TO_LPS @ np.asarray(ijkToRas, dtype=float)[:3, :3]
    spacing = np.linalg.norm(ijkToLps, axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijkToLps / spacing).ravel().tolist())
    image.SetOrigin((RAS_TO_LPS @ np.asarray(ijkToRas, dtype=float)[:3, 3]).tolist())
    return image


def writeSnapshot(snapshot: VolumeSnapshot, compress: bool = True) -> Path:
    """*worker*: write a snapshot to its path (compressed unless told otherwise)."""
    _writeImage(sitkImage(snapshot.array, snapshot.ijkToRas), snapshot.path, compress)
    return snapshot.path


def readLabelArray(path: Path) -> np.ndarray:
    """*worker*: a label map file's voxels (k, j, i), as MRML's ``arrayFromVolume`` would give them."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def rewriteForLoading(path: Path) -> Path:
    """*worker*: the same volume as an uncompressed NRRD beside it (the source removed)."""
    return _rewrite(path)[0]


def rewriteImageForLoading(path: Path) -> tuple[Path, tuple[float, float]]:
    """*worker*: ``rewriteForLoading`` for a scan, with its display window (``displayWindow``)."""
    destination, image = _rewrite(path)
    return destination, displayWindow(sitk.GetArrayViewFromImage(image))


def displayWindow(array: np.ndarray, sampled: int = 2_000_000) -> tuple[float, float]:
    """The 0.1 and 99.9 percentiles of the intensities, as Slicer's automatic window/level takes them.

    Computed here, on a worker, so that the GUI thread sets a display node instead of computing the
    histogram itself (0.08 s of 0.1 s to show a 160x192x192 volume); on a regular sample of the voxels.
    """
    flat = array.reshape(-1)
    sample = flat[:: max(1, flat.size // sampled)]
    low, high = np.percentile(sample, (0.1, 99.9))
    return float(low), float(high)


def _rewrite(path: Path) -> tuple[Path, sitk.Image]:
    destination = path.with_name(_stem(path.name) + LOADING_SUFFIX)
    image = sitk.ReadImage(str(path))
    if destination != path:
        _writeImage(image, destination, compress=False)
        path.unlink()
    return destination, image


def _writeImage(image: sitk.Image, path: Path, compress: bool) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix  # ITK picks the format by it
    partial = path.with_name(f"{temporaryName(path, suffix)}part{suffix}")
    try:
        sitk.WriteImage(image, str(partial), compress)
        os.replace(partial, path)
    except RuntimeError as error:
        raise OSError(
            _("{path}: could not write the volume ({error})").format(path=path, error=error)
        ) from None
    finally:
        if partial.exists():
            partial.unlink()


def _stem(name: str) -> str:
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
