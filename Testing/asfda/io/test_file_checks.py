"""Files SimpleITK would read wrongly or that would not fit: each refused by name before it is used.

Every volume here is built in the test (a few thousand voxels); nothing is read from the dataset.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.errors import DiskFullError, StoreError, VolumeReadError
from asfda.io.volumes import read_volume, write_volume


def volume(shape=(12, 14, 16), dtype=np.int16, seed=0) -> sitk.Image:
    array = np.random.default_rng(seed).integers(0, 3, shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 2.0))
    return image


# -- detached headers ----------------------------------------------------------------------------------------
def detached_nrrd(folder: Path, data_file: Path) -> Path:
    header = folder / "scan.nrrd"
    header.write_text(
        f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: {data_file}\n\n"
    )
    return header


def detached_mha(folder: Path, data_file: Path, name="scan.mha") -> Path:
    header = folder / name
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
        f"ElementDataFile = {data_file}\n"
    )
    return header


@pytest.mark.parametrize("make", [detached_nrrd, detached_mha])
def test_a_detached_header_cannot_read_outside_the_allowed_folders(tmp_path, make):
    outside, inside = tmp_path / "outside", tmp_path / "inside"
    outside.mkdir(), inside.mkdir()
    secret = outside / "secret.raw"
    secret.write_bytes(bytes(range(64)))
    header = make(inside, secret)
    assert sitk.ReadImage(str(header)).GetSize() == (4, 4, 4)  # what SimpleITK alone would do
    with pytest.raises(
        VolumeReadError, match=r"scan\.(nrrd|mha): the header's data file .*secret.raw.* outside"
    ):
        read_volume(header, data_roots=[inside])
    with pytest.raises(VolumeReadError, match="names a separate data file"):
        read_volume(header, data_roots=())  # an upload: no data file at all
    relative = make(inside, Path("..") / "outside" / "secret.raw")  # a relative escape
    with pytest.raises(VolumeReadError, match="outside"):
        read_volume(relative, data_roots=[inside])
    local = inside / "local.raw"
    local.write_bytes(bytes(range(64)))
    assert read_volume(make(inside, local), data_roots=[inside]).GetSize() == (4, 4, 4)


def test_a_list_of_data_files_is_refused(tmp_path):
    header = detached_mha(tmp_path, Path("LIST"), "list.mhd")
    with pytest.raises(VolumeReadError, match="list.mhd: the header names a list or pattern"):
        read_volume(header, data_roots=[tmp_path])


# -- truncated and corrupt compression -----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_truncated_compressed_file_is_refused_by_name(tmp_path, suffix):
    path = tmp_path / f"whole{suffix}"
    sitk.WriteImage(volume((30, 30, 30)), str(path), True)
    data = path.read_bytes()
    half = tmp_path / f"half{suffix}"
    half.write_bytes(data[: len(data) // 2 + 200])
    with pytest.raises(VolumeReadError, match=rf"half{suffix}: the .*(truncated|corrupt)"):
        read_volume(half)
    corrupt = tmp_path / f"corrupt{suffix}"
    corrupt.write_bytes(data[:-400] + bytes(200) + data[-200:])
    with pytest.raises(VolumeReadError, match=rf"corrupt{suffix}"):
        read_volume(corrupt)
    assert read_volume(path).GetSize() == (30, 30, 30)


# -- raw values ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_in_every_format(tmp_path, suffix, value):
    array = np.zeros((5, 6, 7), np.float32)
    array[2, 3, 4] = value
    path = tmp_path / f"bad{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(VolumeReadError, match=rf"bad{suffix}: the volume contains NaN or infinite values"):
        read_volume(path)


def test_the_decoded_size_is_bounded_from_the_header(tmp_path):
    path = tmp_path / "huge.nii.gz"
    sitk.WriteImage(sitk.Image(256, 256, 160, sitk.sitkUInt8), str(path), True)  # 10 M voxels, ~10 KB
    assert path.stat().st_size < 100_000
    with pytest.raises(
        VolumeReadError, match="huge.nii.gz: the volume holds 10.0 million voxels .* limit of 1.0"
    ):
        read_volume(path, max_voxels=2**20)
    assert read_volume(path, max_voxels=None).GetSize() == (256, 256, 160)


def test_vector_and_2d_volumes_are_refused_at_the_door(tmp_path):
    vector = sitk.Compose(volume(), volume(seed=1))
    sitk.WriteImage(vector, str(tmp_path / "vector.nii.gz"))
    with pytest.raises(
        VolumeReadError, match="vector.nii.gz: the volume has 2 channels per voxel; the model takes 1"
    ):
        read_volume(tmp_path / "vector.nii.gz")
    sitk.WriteImage(sitk.Image(20, 20, sitk.sitkFloat32), str(tmp_path / "slice.nii.gz"))
    with pytest.raises(VolumeReadError, match="slice.nii.gz: expected a 3D volume, found 2D"):
        read_volume(tmp_path / "slice.nii.gz")


# -- verified writes -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def small_filesystem(folder: Path, size_kb: int):
    """A tmpfs of ``size_kb`` mounted at ``folder`` (needs root and mount permission, else the test skips)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", f"asfda-test-{uuid.uuid4().hex[:6]}", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_kb: int) -> None:
    """Fill a file system until about ``leave_kb`` KB are free."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    (folder / "ballast").write_bytes(bytes(max(free - leave_kb * 1024, 0)))


def incompressible_mask() -> sitk.Image:
    return volume((40, 40, 40), np.uint8, seed=3)  # ~ 17 KB as .nii.gz, like the attack's mask


def test_a_full_disk_is_an_error_and_the_old_file_stays(tmp_path):
    """On a real small file system (tmpfs): SimpleITK's short write must not be renamed into place."""
    with small_filesystem(tmp_path / "disk", 256) as disk:
        target = disk / "labels" / "case.nii.gz"
        old = write_volume(volume(), target)
        before = target.read_bytes()
        for leave_kb in (0, 4, 8):  # the mask needs about 13 KB
            fill(disk, leave_kb)
            with pytest.raises(DiskFullError, match="case.nii.gz: no space left on device"):
                write_volume(incompressible_mask(), target)
            assert target.read_bytes() == before, leave_kb  # the old file, whole
            assert sorted(p.name for p in target.parent.iterdir()) == ["case.nii.gz"]  # nothing temporary
            (disk / "ballast").unlink()
        fill(disk, 64)
        assert old == write_volume(incompressible_mask(), target)  # room enough: written and verified
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))
        assert np.array_equal(written, sitk.GetArrayFromImage(incompressible_mask()))


def test_a_short_write_is_caught_without_a_small_disk(tmp_path, monkeypatch):
    """The same check without mounting: a writer that cuts the file at 8192 bytes, as the full disk did."""
    real_write = sitk.WriteImage

    def short_write(image, path, *args):
        real_write(image, path, *args)
        with open(path, "rb+") as stream:
            stream.truncate(8192)

    target = tmp_path / "case.nii.gz"
    write_volume(volume(), target)
    before = target.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", short_write)
    with pytest.raises(StoreError, match="case.nii.gz: the written file did not read back intact"):
        write_volume(incompressible_mask(), target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["case.nii.gz"]


def test_a_whole_gzip_reads(tmp_path):
    path = tmp_path / "plain.nii.gz"
    sitk.WriteImage(volume(), str(path), True)
    with gzip.open(path) as stream:
        assert len(stream.read()) > 0
    assert read_volume(path).GetSize() == (16, 14, 12)
