"""The model zoo's 3D segmentation bundles, with their own configs (``bundles/``, reduced network sizes and
random weights): each family is created into a session and predicts on the case's own grid; a bundle that
needs its code run is refused, by name, unless the user trusts it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.errors import CheckpointError
from asfda.models.bundle_config import BundleCodeRefused
from asfda.models.loading import load_model
from asfda.models.spec import IntensityNorm
from asfda.session.session import AdaptationSession
from zoo_bundles import sphere_volume, zoo_bundle

pytestmark = pytest.mark.slow


def drop_img_size(config):
    """The one-line fix the BTCV bundle needs since MONAI 1.5 removed SwinUNETR's img_size."""
    del config["network_def"]["img_size"]


# bundle, config edit, needs --trust-bundle-code, the case's voxel size in mm
FAMILIES = {
    "spleen_ct_segmentation": (None, False, (4.5, 4.5, 6.0)),
    "swin_unetr_btcv_segmentation": (drop_img_size, False, (4.5, 4.5, 6.0)),
    "wholeBody_ct_segmentation": (None, False, (4.5, 4.5, 4.5)),
    "prostate_mri_anatomy": (None, False, (1.5, 1.5, 1.5)),
    "segmentation_template": (None, False, (6.0, 6.0, 6.0)),
    "pancreas_ct_dints_segmentation": (None, True, (3.0, 3.0, 3.0)),
    "renalStructures_UNEST_segmentation": (None, True, (3.0, 3.0, 3.0)),
    "wholeBrainSeg_Large_UNEST_segmentation": (None, True, (6.0, 6.0, 6.0)),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bundle_creates_and_predicts_on_the_case_grid(tmp_path, name):
    edit, needs_code, spacing = FAMILIES[name]
    bundle = zoo_bundle(tmp_path, name, edit)
    if needs_code:
        with pytest.raises(BundleCodeRefused, match="is code .*--trust-bundle-code"):
            AdaptationSession.create(tmp_path / "refused", bundle, "cpu")
    session = AdaptationSession.create(tmp_path / "session", bundle, "cpu", trust_bundle_code=needs_code)
    case = session.add_volume(sphere_volume(tmp_path / "case.nii.gz", spacing=spacing))
    written = sitk.ReadImage(str(session.write_prediction(case.id, tmp_path / "prediction.nii.gz")))
    image = sitk.ReadImage(str(tmp_path / "case.nii.gz"))
    assert written.GetSize() == image.GetSize() and written.GetSpacing() == image.GetSpacing()
    assert set(np.unique(sitk.GetArrayFromImage(written))) <= set(session.labels)
    if needs_code and "UNEST" not in name:  # the consent is the session's (UNesT: 87 M weights, skipped)
        assert AdaptationSession.open(tmp_path / "session", "cpu").pretrained().spec.labels == session.labels


def test_labels_and_intensity_chains_are_the_bundles(tmp_path):
    whole_body = load_model(zoo_bundle(tmp_path, "wholeBody_ct_segmentation")).spec
    assert whole_body.spacing == (1.5, 1.5, 1.5)  # "$[1.5, 1.5, 1.5] if @displayable_configs#highres ..."
    assert whole_body.labels[1] == "spleen" and len(whole_body.labels) == 105
    assert whole_body.intensity is IntensityNorm.TRANSFORMS
    assert [step["name"] for step in whole_body.intensity_transforms] == [
        "NormalizeIntensity",
        "ScaleIntensity",
    ]
    prostate = load_model(zoo_bundle(tmp_path, "prostate_mri_anatomy")).spec
    assert [step["name"] for step in prostate.intensity_transforms] == [
        "ScaleIntensity",
        "NormalizeIntensity",
    ]
    template = load_model(zoo_bundle(tmp_path, "segmentation_template")).spec  # YAML, "$@transforms"
    assert template.roi_size == (32, 32, 32)  # SimpleInferer: the stated input shape
    assert template.labels == {0: "background", 1: "category 1", 2: "category 2", 3: "category 3"}


def test_config_labels_win_over_metadata(tmp_path):
    bundle = zoo_bundle(
        tmp_path, "spleen_ct_segmentation", lambda c: c.update(labels={"background": 0, "Spleen": 1})
    )
    assert load_model(bundle).spec.labels == {0: "background", 1: "Spleen"}


def test_failed_network_build_shows_monais_message(tmp_path):
    bundle = zoo_bundle(tmp_path, "swin_unetr_btcv_segmentation", drop_img_size)
    config = bundle / "configs" / "inference.json"
    data = json.loads(config.read_text())
    data["network_def"]["img_size"] = 96  # as published: MONAI 1.5 removed the argument
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="unexpected keyword argument 'img_size'"):
        load_model(bundle)


def test_expression_that_runs_code_never_runs_without_trust(tmp_path):
    marker = tmp_path / "PWNED"
    command = f"$__import__('os').system('touch {marker}')"
    bundle = zoo_bundle(tmp_path, "spleen_ct_segmentation")
    config = bundle / "configs" / "inference.json"
    data = json.loads(config.read_text())
    data["network_def"]["num_res_units"] = command
    data["initialize"].append(command)
    config.write_text(json.dumps(data))
    with pytest.raises(BundleCodeRefused, match=r"`network_def::num_res_units` is code .*__import__"):
        AdaptationSession.create(tmp_path / "session", bundle, "cpu")
    assert not marker.exists()


def test_component_outside_monai_is_refused_by_name(tmp_path):
    marker = tmp_path / "PWNED"
    bundle = zoo_bundle(tmp_path, "spleen_ct_segmentation")
    config = bundle / "configs" / "inference.json"
    data = json.loads(config.read_text())
    data["network_def"]["act"] = {"_target_": "os.system", "command": f"touch {marker}"}
    config.write_text(json.dumps(data))
    with pytest.raises(BundleCodeRefused, match="_target_ 'os.system', not one of MONAI's own"):
        load_model(bundle)
    assert not marker.exists()


def test_dints_torch_load_is_refused_untrusted_and_mapped_to_the_engine_device(tmp_path):
    bundle = zoo_bundle(tmp_path, "pancreas_ct_dints_segmentation")
    with pytest.raises(BundleCodeRefused, match=r"`arch_ckpt` is code \(`\$torch.load"):
        load_model(bundle)
    # the config loads its architecture code with map_location=torch.device('cuda'): on this CPU machine
    # it works only because torch.load's map_location is the engine's device
    assert load_model(bundle, trust_code=True).spec.intensity is IntensityNorm.RANGE
