"""A case of several channels: a 4-D file (channels along the 4th axis), a vector file, or co-registered
channel volumes joined; a count other than the model's is refused naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.errors import VolumeReadError
from asfda.io.volumes import compose_channels, read_volume


def channel(value: float, size=(6, 5, 4), spacing=(2.0, 2.0, 3.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.full(size[::-1], value, dtype=np.float32))
    image.SetSpacing(spacing)
    return image


def test_four_d_file_is_read_as_channels(tmp_path):
    path = tmp_path / "brats.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([channel(c) for c in range(4)]), str(path))
    assert sitk.ReadImage(str(path)).GetDimension() == 4  # a true 4-D file, not a vector one
    image = read_volume(path, components=4)
    assert image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 4
    assert image.GetSize() == (6, 5, 4) and image.GetSpacing() == (2.0, 2.0, 3.0)
    assert sitk.GetArrayFromImage(image)[0, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(VolumeReadError, match="brats.nii.gz: expected a 3D volume, found 4D"):
        read_volume(path)  # a single-channel model
    with pytest.raises(
        VolumeReadError, match="brats.nii.gz: the volume has 4 channels per voxel; the model takes 2"
    ):
        read_volume(path, components=2)


def test_channel_volumes_must_share_a_grid(tmp_path):
    paths = []
    for index, image in enumerate([channel(1), channel(2), channel(3, spacing=(2.0, 2.0, 2.5))]):
        paths.append(tmp_path / f"c{index}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    joined = compose_channels(paths[:2])
    assert joined.GetNumberOfComponentsPerPixel() == 2
    with pytest.raises(VolumeReadError, match="c2.nii.gz: not on the grid of c0.nii.gz"):
        compose_channels(paths)
