"""``asfda check-bundle`` and ``describe-model`` on model-zoo bundles: works, or refused and why; the note
that a bundle's config is code; ``%file#key`` macros; ``asfda add --channels``."""

from __future__ import annotations

import json

from asfda.cli.main import main
from asfda.models.loading import load_model
from asfda.models.spec import ModelSpec
from zoo_bundles import FIXTURES, sphere_volume, zoo_bundle


def test_check_bundle_says_what_works_and_why_not(tmp_path, capsys):
    spleen = zoo_bundle(tmp_path, "spleen_ct_segmentation")
    dints = FIXTURES / "pancreas_ct_dints_segmentation"
    assert main(["check-bundle", str(spleen)]) == 0
    assert "works: 1 input channel(s), 2 classes, spacing (1.5, 1.5, 2.0)" in capsys.readouterr().out
    assert (
        main(["check-bundle", str(spleen), str(dints), str(FIXTURES / "swin_unetr_btcv_segmentation")]) == 2
    )
    out, err = capsys.readouterr()
    assert "`arch_ckpt` is code (`$torch.load(@arch_ckpt_path, map_location=torch.device('cuda'))`)" in out
    assert "unexpected keyword argument 'img_size'" in out
    assert "2 of 3 bundles refused" in err and "Traceback" not in out + err


def test_describe_model_says_configs_are_code_and_takes_regions(tmp_path, capsys):
    bundle = zoo_bundle(tmp_path, "brats_mri_segmentation")
    labels = "0=background,1=necrosis,2=oedema,4=enhancing"
    assert main(["describe-model", str(bundle), "--labels", labels, "--regions", "1=0+1,2=1,4=0+1+2"]) == 0
    assert "a MONAI bundle's config is code" in capsys.readouterr().out
    spec = ModelSpec.load(bundle)
    assert spec.multi_label and spec.in_channels == 4 and spec.regions == {1: [0, 1], 2: [1], 4: [0, 1, 2]}
    assert load_model(bundle).spec.activation.regions == ((1, (0, 1)), (2, (1,)), (4, (0, 1, 2)))


def test_macro_reads_a_file_of_the_bundle(tmp_path):
    def macro(config):
        config["network_def"] = "%configs/network.json#unet"

    bundle = zoo_bundle(tmp_path, "spleen_ct_segmentation")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    (bundle / "configs" / "network.json").write_text(json.dumps({"unet": config["network_def"]}))
    macro(config)
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    assert load_model(bundle).spec.labels == {0: "background", 1: "spleen"}


def test_add_channels_from_the_command_line(tmp_path, capsys):
    bundle = zoo_bundle(tmp_path, "brats_mri_segmentation")
    session = str(tmp_path / "session")
    assert main(["create", "--session", session, "--model", str(bundle), "--device", "cpu"]) == 0
    channels = [str(sphere_volume(tmp_path / f"{n}.nii.gz")) for n in ("t1", "t1c", "t2", "flair")]
    assert main(["add", "--session", session, "--channels", *channels[:3]]) == 2
    assert "3 channel volumes given; the model takes 4" in capsys.readouterr().err
    assert main(["add", "--session", session, "--channels", *channels]) == 0
    assert "(4 channels)" in capsys.readouterr().out
    assert main(["add", "--session", session, channels[0]]) == 2
    assert "the volume has 1 channel per voxel; the model takes 4" in capsys.readouterr().err
