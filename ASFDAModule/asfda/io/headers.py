"""What a volume file says before its voxels are decoded: the data files a detached header names, whether its
compressed stream is whole, and the raw values SimpleITK would hide.

These checks run before SimpleITK reads a file, because SimpleITK silently reads what it should refuse: an
NRRD ``data file:`` or a MetaImage ``ElementDataFile`` anywhere on the disk, half of a truncated ``.gz`` (the
rest as zeros), NaN in a NIfTI file as 0.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import VolumeReadError

HEADER_BYTES = 1 << 16  # detached headers are text of a few hundred bytes
CHUNK_BYTES = 1 << 20
# A decoded volume larger than this (voxels x components) is refused before it is read: 2^28 float32 voxels
# are 1 GiB. The backend's --max-megavoxels and the environment variable override it.
DEFAULT_MAX_VOXELS = int(float(os.environ.get("ASFDA_MAX_MEGAVOXELS", 256)) * 2**20)


def _header_lines(path: Path) -> list[str]:
    with open(path, "rb") as stream:
        head = stream.read(HEADER_BYTES)
    text = head.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    return text.decode("latin-1").splitlines()


def detached_data_files(path: str | Path) -> list[Path]:
    """The data files a detached NRRD or MetaImage header names (empty when the voxels are in the file).

    Lists and numbered patterns of data files are refused: each would have to be confined one by one, and no
    medical volume this project reads needs them.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nrrd") or name.endswith(".nhdr"):
        keys, separator = ("data file", "datafile"), ":"
    elif name.endswith(".mha") or name.endswith(".mhd"):
        keys, separator = ("elementdatafile",), "="
    else:
        return []
    try:
        lines = _header_lines(path)
    except OSError as error:
        raise VolumeReadError(f"cannot read the header ({error.strerror or error})", path) from error
    files = []
    for line in lines:
        key, found, value = line.partition(separator)
        if not found or key.strip().lower() not in keys:
            continue
        value = value.strip()
        if value.upper() == "LOCAL":
            continue
        pattern = separator == ":" and " " in value  # NRRD's "data file: name%03d.raw 1 10 1"
        if value.upper().startswith("LIST") or "%" in value or pattern:
            raise VolumeReadError(f"the header names a list or pattern of data files ({value!r})", path)
        target = Path(value)
        files.append((target if target.is_absolute() else path.parent / target).resolve())
    return files


def confine_data_files(path: str | Path, data_roots: Sequence[Path] | None) -> None:
    """Refuse a detached header whose data file lies outside ``data_roots`` (``()``: no data file allowed;
    ``None``: anywhere, for the user's own command line)."""
    if data_roots is None:
        return
    roots = [Path(root).resolve() for root in data_roots]
    for data_file in detached_data_files(path):
        if not roots:
            raise VolumeReadError(
                f"the header names a separate data file ({data_file}); send a single-file volume "
                "(.nii.gz, .nrrd or .mha with the voxels inside)",
                path,
            )
        if not any(data_file == root or data_file.is_relative_to(root) for root in roots):
            raise VolumeReadError(
                f"the header's data file {data_file} is outside the session folder and the allowed folders",
                path,
            )


def _check_deflate_stream(stream, decompressor, path: Path, what: str) -> int:
    """Decompress to the end; a stream that stops early or is corrupt is an error. Returns the size."""
    decoded = 0
    try:
        while chunk := stream.read(CHUNK_BYTES):
            decoded += len(decompressor.decompress(chunk))
            if decompressor.eof:
                break
    except zlib.error as error:
        raise VolumeReadError(f"the {what} data is corrupt ({error})", path) from error
    if not decompressor.eof:
        raise VolumeReadError(
            f"the {what} data is truncated (the file ends before its compressed stream)", path
        )
    return decoded


def check_compressed_stream(path: str | Path) -> None:
    """A ``.gz`` file, or an NRRD / MetaImage with compressed voxels inside, must decompress to its end."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                while stream.read(CHUNK_BYTES):
                    pass
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
            problem = "truncated" if isinstance(error, EOFError) else f"corrupt ({error})"
            raise VolumeReadError(f"the gzip-compressed file is {problem}", path) from error
        return
    if not (name.endswith(".nrrd") or name.endswith(".mha")) or detached_data_files(path):
        return
    lines = [line.lower().replace(" ", "") for line in _header_lines(path)]
    if name.endswith(".nrrd"):
        compressed = any(line in ("encoding:gzip", "encoding:gz") for line in lines)
        wbits, marker = 16 + zlib.MAX_WBITS, b"\n\n"
    else:
        compressed = "compresseddata=true" in lines
        wbits, marker = zlib.MAX_WBITS, b"ElementDataFile"
    if not compressed:
        return
    with open(path, "rb") as stream:
        head = stream.read(HEADER_BYTES)
        start = head.find(marker)
        start = head.find(b"\n", start + 1) + 1 if start >= 0 and marker != b"\n\n" else start + 2
        if start <= 1:
            return  # a header SimpleITK will judge
        stream.seek(start)
        _check_deflate_stream(stream, zlib.decompressobj(wbits), path, "compressed voxel")


def check_nifti_finite(path: str | Path) -> None:
    """NaN or infinite raw values in a NIfTI file (SimpleITK reads them as 0, so its array cannot tell)."""
    import nibabel

    path = Path(path)
    try:
        image = nibabel.load(str(path))
        stored = image.get_data_dtype()  # from the header: whole-number voxels cannot be NaN, skip the pass
        if not (np.issubdtype(stored, np.floating) or np.issubdtype(stored, np.complexfloating)):
            return
        raw = np.asanyarray(image.dataobj.get_unscaled())
    except Exception as error:  # nibabel's own errors: SimpleITK gives the reader's verdict afterwards
        del error
        return
    if np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.complexfloating):
        if not np.isfinite(raw).all():
            raise VolumeReadError("the volume contains NaN or infinite values", path)
