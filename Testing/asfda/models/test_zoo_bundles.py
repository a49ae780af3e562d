"""The model zoo's 3D segmentation bundles, with their own configs (``bundles/``, reduced network sizes and
random weights): each family is created into a session, predicts on the case's own grid and ranks (UNesT:
predicts only); a bundle that needs its code run is refused, by name, unless the user trusts it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from asfda.config import FinetuneConfig
from asfda.errors import CheckpointError, VolumeReadError
from asfda.models.bundle_config import BundleCodeRefused
from asfda.models.loading import load_model
from asfda.models.spec import IntensityNorm
from asfda.session.session import AdaptationSession
from zoo_bundles import sphere_mask, sphere_volume, zoo_bundle

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
    if "UNEST" not in name:  # UNesT's 96^3 windows and 47-87 M weights: predicted once, not ranked again
        ranking = session.rank()
        assert [row.case_id for row in ranking] == [case.id]
        assert np.isfinite([ranking[0].knowledge_gap, ranking[0].asd]).all()
    if needs_code and "UNEST" not in name:  # the consent is the session's
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


@pytest.mark.parametrize("target", ["os.system", "monai.utils.run_cmd"])
def test_component_outside_monais_classes_is_refused_by_name(tmp_path, target):
    marker = tmp_path / "PWNED"
    bundle = zoo_bundle(tmp_path, "spleen_ct_segmentation")
    config = bundle / "configs" / "inference.json"
    data = json.loads(config.read_text())
    command = (
        {"command": f"touch {marker}"} if target == "os.system" else {"cmd_list": ["touch", str(marker)]}
    )
    data["network_def"]["act"] = {"_target_": target, **command}
    config.write_text(json.dumps(data))
    with pytest.raises(BundleCodeRefused, match=f"_target_ '{target}', not one of MONAI's own"):
        load_model(bundle)
    assert not marker.exists()


def test_dints_torch_load_is_refused_untrusted_and_mapped_to_the_engine_device(tmp_path):
    bundle = zoo_bundle(tmp_path, "pancreas_ct_dints_segmentation")
    with pytest.raises(BundleCodeRefused, match=r"`arch_ckpt` is code \(`\$torch.load"):
        load_model(bundle)
    # the config loads its architecture code with map_location=torch.device('cuda'): on this CPU machine
    # it works only because torch.load's map_location is the engine's device
    assert load_model(bundle, trust_code=True).spec.intensity is IntensityNorm.RANGE


def test_brats_takes_four_channels_and_reads_sigmoid_regions(tmp_path):
    """BraTS SegResNet: 4 MR sequences in, 3 overlapping sigmoid regions out (Activationsd sigmoid=True,
    AsDiscreted threshold 0.5): one channel a label, a case as a 4-D file or as its channel volumes; a
    single-channel volume is refused when it is added, naming the file and what to give instead."""
    bundle = zoo_bundle(tmp_path, "brats_mri_segmentation")
    spec = load_model(bundle).spec
    assert spec.in_channels == 4 and spec.multi_label and spec.threshold == 0.5
    assert spec.labels == {0: "background", 1: "Tumor core", 2: "Whole tumor", 3: "Enhancing tumor"}
    session = AdaptationSession.create(tmp_path / "session", bundle, "cpu")
    single = sphere_volume(tmp_path / "t1.nii.gz")
    with pytest.raises(
        VolumeReadError, match=r"t1.nii.gz: the volume has 1 channel per voxel; the model takes 4"
    ):
        session.add_volume(single)
    stacked = sphere_volume(tmp_path / "case4d.nii.gz", channels=4)
    case = session.add_volume(stacked)
    channels = [sphere_volume(tmp_path / f"{name}.nii.gz") for name in ("t1", "t1c", "t2", "flair")]
    joined = session.add_channels(channels)
    assert joined.id != case.id and session.image(joined.id).GetNumberOfComponentsPerPixel() == 4
    written = sitk.ReadImage(str(session.write_prediction(case.id, tmp_path / "prediction.nii.gz")))
    assert written.GetSize() == sitk.ReadImage(str(single)).GetSize()
    ranking = session.rank()
    assert len(ranking) == 2 and all(np.isfinite([row.knowledge_gap, row.asd]).all() for row in ranking)


def finetune_round(session: AdaptationSession, case_id: str, mask, batch_size: int) -> None:
    """Label the case with its sphere and train one round; the round must change the weights."""
    session.submit_label(case_id, mask)
    config = FinetuneConfig(
        steps=1, batch_size=batch_size, semi_supervised=False, accept_worse=True, hold_out_validation=False
    )
    version = session.finetune(config)
    before = session.pretrained().network.state_dict()
    after = session.load_version(version.id).network.state_dict()
    assert any(not torch.equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize(
    "name, edit, spacing",
    [
        ("swin_unetr_btcv_segmentation", drop_img_size, (4.5, 4.5, 6.0)),
        ("wholeBody_ct_segmentation", None, (4.5, 4.5, 4.5)),
        ("brats_mri_segmentation", None, (6.0, 6.0, 6.0)),
    ],
)
def test_bundle_finetunes_one_round(tmp_path, name, edit, spacing):
    bundle = zoo_bundle(tmp_path, name, edit)
    session = AdaptationSession.create(tmp_path / "session", bundle, "cpu")
    channels = 4 if name.startswith("brats") else 1
    volume = sphere_volume(tmp_path / "case.nii.gz", (20, 20, 16), spacing, channels)
    case = session.add_volume(volume)
    # instance norm (SwinUNETR) and group norm (SegResNet) train on one patch; BraTS's batch of 2 checks
    # that 4-channel patches are batched
    batch_size = 2 if name.startswith("brats") else 1
    finetune_round(session, case.id, sphere_mask(tmp_path / "mask.nii.gz", volume), batch_size)
