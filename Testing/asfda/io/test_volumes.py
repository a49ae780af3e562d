import numpy as np
import pytest
import SimpleITK as sitk
import torch
from asfda.errors import MaskError, VolumeReadError
from asfda.inference.labelmap import predict_labelmap
from asfda.io.masks import validated_mask
from asfda.io.preprocessing import preprocess_case
from asfda.io.volumes import Geometry, case_name, content_hash, read_volume, write_volume
from asfda.models.loading import LoadedModel, ModelKind
from asfda.models.spec import IntensityNorm, ModelSpec

LABELS = {0: "background", 1: "ball", 2: "core"}


def oblique_volume(size=(30, 26, 20)) -> tuple[sitk.Image, sitk.Image]:
    """An anisotropic, rotated, shifted volume and its label map: a ball with a core."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in size], indexing="ij")
    radius = np.sqrt((x - 15) ** 2 + (y - 13) ** 2 + ((z - 10) * 2) ** 2)
    labels = np.where(radius < 5, 2, np.where(radius < 10, 1, 0)).astype(np.uint8)
    intensity = (100.0 * labels + np.random.default_rng(0).normal(0, 5, size)).astype(np.float32)
    image = sitk.GetImageFromArray(np.transpose(intensity, (2, 1, 0)))
    image.SetSpacing((1.2, 0.9, 2.5))
    image.SetOrigin((-40.5, 12.25, 7.0))
    image.SetDirection(sitk.VersorTransform((0.3, 0.2, 1.0), 0.4).GetMatrix())
    label = sitk.GetImageFromArray(np.transpose(labels, (2, 1, 0)))
    label.CopyInformation(image)
    return image, label


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".seg.nrrd"])
def test_geometry_survives_write_and_read(tmp_path, suffix):
    image, label = oblique_volume()
    path = write_volume(label, tmp_path / f"case{suffix}")
    back = read_volume(path)
    assert Geometry.of(back).mismatch(Geometry.of(image)) is None
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(label))
    assert case_name(path) == "case"


def test_content_hash_ignores_the_file_format(tmp_path):
    image, _ = oblique_volume()
    a = read_volume(write_volume(image, tmp_path / "a.nii.gz"))
    b = read_volume(write_volume(image, tmp_path / "b.nrrd"))
    assert content_hash(a) == content_hash(b)
    shifted = sitk.Image(image)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    assert content_hash(shifted) != content_hash(image)


def one_hot_model(spec: ModelSpec) -> LoadedModel:
    """A 'network' whose prediction is its input thresholded, to check geometry without training."""

    class Threshold(torch.nn.Module):
        def forward(self, x):
            return torch.cat([(x < 0.5) * 10.0, ((x >= 0.5) & (x < 1.5)) * 10.0, (x >= 1.5) * 10.0], 1)

    return LoadedModel(Threshold(), spec, ModelKind.NETWORK, None)


def test_prediction_lands_on_the_volume_grid_exactly_without_resampling():
    _, label = oblique_volume()
    spec = ModelSpec(
        labels=LABELS, spacing=None, orientation="RAS", intensity=IntensityNorm.NONE, roi_size=(16, 16, 16)
    )
    prediction = predict_labelmap(one_hot_model(spec), sitk.Cast(label, sitk.sitkFloat32))
    assert Geometry.of(prediction).mismatch(Geometry.of(label)) is None
    assert np.array_equal(sitk.GetArrayFromImage(prediction), sitk.GetArrayFromImage(label))


def test_prediction_made_at_another_spacing_is_inverted_onto_the_volume_grid():
    _, label = oblique_volume()
    spec = ModelSpec(
        labels=LABELS,
        spacing=(2.0, 2.0, 2.0),
        orientation="RAS",
        intensity=IntensityNorm.NONE,
        roi_size=(16, 16, 16),
    )
    case = preprocess_case(sitk.Cast(label, sitk.sitkFloat32), spec)
    assert case.image.shape[1:] != tuple(label.GetSize())  # really resampled
    prediction = predict_labelmap(one_hot_model(spec), sitk.Cast(label, sitk.sitkFloat32))
    assert Geometry.of(prediction).mismatch(Geometry.of(label)) is None
    agreement = (sitk.GetArrayFromImage(prediction) == sitk.GetArrayFromImage(label)).mean()
    assert agreement > 0.95


def test_unreadable_and_non_finite_volumes_are_refused_by_name(tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"this is not a volume")
    with pytest.raises(VolumeReadError, match="corrupt.nii.gz: not a readable volume"):
        read_volume(corrupt)
    with pytest.raises(VolumeReadError, match="missing.nii.gz: file not found"):
        read_volume(tmp_path / "missing.nii.gz")
    image, _ = oblique_volume()
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = np.nan
    nan_image = sitk.GetImageFromArray(array)
    nan_image.CopyInformation(image)
    path = write_volume(nan_image, tmp_path / "nan.nrrd")
    with pytest.raises(VolumeReadError, match="nan.nrrd: the volume contains NaN"):
        read_volume(path)


def test_a_valid_mask_is_accepted(tmp_path):
    image, label = oblique_volume()
    mask = validated_mask(write_volume(label, tmp_path / "mask.nii.gz"), image, LABELS)
    assert mask.GetPixelID() == sitk.sitkUInt8


def test_mask_with_other_geometry_is_refused(tmp_path):
    image, label = oblique_volume()
    moved = sitk.Image(label)
    moved.SetSpacing((1.0, 1.0, 1.0))
    with pytest.raises(MaskError, match="moved.nii.gz: geometry does not match its case: spacing"):
        validated_mask(write_volume(moved, tmp_path / "moved.nii.gz"), image, LABELS)
    smaller = label[:-1, :, :]
    with pytest.raises(MaskError, match="size"):
        validated_mask(write_volume(smaller, tmp_path / "small.nii.gz"), image, LABELS)


def test_mask_with_unknown_label_values_is_refused(tmp_path):
    image, label = oblique_volume()
    wrong = sitk.Image(label)
    wrong[3, 3, 3] = 7
    with pytest.raises(MaskError, match=r"label values \[7\] are not labels of the model"):
        validated_mask(write_volume(wrong, tmp_path / "wrong.nii.gz"), image, LABELS)


def test_empty_mask_is_refused(tmp_path):
    image, label = oblique_volume()
    empty = sitk.Image(label) * 0
    with pytest.raises(MaskError, match="empty.nii.gz: the mask is empty"):
        validated_mask(write_volume(empty, tmp_path / "empty.nii.gz"), image, LABELS)
