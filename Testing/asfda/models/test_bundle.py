"""A bundle's own preprocessing, read from its configs (no asfda_model.json), or a refusal that names what
it does not state."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from asfda.errors import CheckpointError
from asfda.inference.labelmap import predict_labelmap
from asfda.io.volumes import read_volume
from asfda.models.loading import ModelKind, build_network, load_model
from asfda.models.spec import IntensityNorm, ModelSpec, NetworkSpec
from bundle_helpers import write_bundle

UNET_KWARGS = {
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
}
LABELS = {0: "background", 1: "a", 2: "b"}


def test_bundle_preprocessing_is_read_from_its_configs(tmp_path):
    model = load_model(
        write_bundle(tmp_path / "b", UNET_KWARGS, LABELS, roi_size=(24, 24, 24), spacing=(8, 7, 9))
    )
    assert model.kind is ModelKind.BUNDLE
    spec = model.spec
    assert spec.spacing == (8.0, 7.0, 9.0)  # through the bundle's "@spacing" reference
    assert spec.orientation == "RAS" and spec.intensity is IntensityNorm.ZSCORE_NONZERO
    assert spec.roi_size == (24, 24, 24)  # through a "$" expression
    assert spec.labels == LABELS and spec.output_activation.value == "logits"


def test_ct_window_is_read(tmp_path):
    preprocessing = [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0]},
        {
            "_target_": "ScaleIntensityRanged",
            "keys": "image",
            "a_min": -57,
            "a_max": 164,
            "b_min": 0.0,
            "b_max": 1.0,
            "clip": True,
        },
    ]
    spec = load_model(write_bundle(tmp_path / "b", UNET_KWARGS, LABELS, preprocessing=preprocessing)).spec
    assert spec.intensity is IntensityNorm.RANGE and spec.intensity_range == (-57.0, 164.0, 0.0, 1.0)
    assert spec.orientation is None and spec.spacing == (1.5, 1.5, 2.0)


def test_bundle_without_preprocessing_is_refused_by_field(tmp_path):
    folder = write_bundle(tmp_path / "b", UNET_KWARGS, LABELS)
    config = folder / "configs" / "inference.json"
    import json

    data = json.loads(config.read_text())
    del data["preprocessing"], data["inferer"]
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="does not state spacing, orientation, intensity, roi_size"):
        load_model(folder)


def test_unknown_transform_is_refused_by_name(tmp_path):
    preprocessing = [{"_target_": "RandGaussianNoised", "keys": "image"}]
    with pytest.raises(CheckpointError, match="preprocessing transform RandGaussianNoise"):
        load_model(write_bundle(tmp_path / "b", UNET_KWARGS, LABELS, preprocessing=preprocessing))


def test_bundle_predicts_like_the_equivalent_folder_model(tmp_path, tiny_dataset):
    """Without asfda_model.json the bundle still resamples to its own spacing: its label map is
    voxel-identical to that of a folder model stating the same preprocessing, and differs from one that
    skips it."""
    torch.manual_seed(0)
    network = NetworkSpec("UNet", UNET_KWARGS)
    weights = build_network(network).state_dict()
    bundle = write_bundle(
        tmp_path / "bundle",
        UNET_KWARGS,
        LABELS,
        roi_size=(16, 16, 16),
        spacing=(9.0, 9.0, 9.0),
        weights=weights,
    )
    assert not (bundle / "asfda_model.json").exists()

    def folder_model(name, spacing):
        folder = tmp_path / name
        folder.mkdir()
        ModelSpec(labels=LABELS, network=network, spacing=spacing, roi_size=(16, 16, 16)).save(folder)
        torch.save(weights, folder / "model.pt")
        return load_model(folder)

    image = read_volume(tiny_dataset.test[0][0])
    from_bundle = sitk.GetArrayFromImage(predict_labelmap(load_model(bundle), image))
    same = sitk.GetArrayFromImage(predict_labelmap(folder_model("same", (9.0, 9.0, 9.0)), image))
    native = sitk.GetArrayFromImage(predict_labelmap(folder_model("native", None), image))
    assert np.array_equal(from_bundle, same)
    assert not np.array_equal(from_bundle, native)  # the comparison can fail: spacing matters
