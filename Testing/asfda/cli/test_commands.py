"""The command line over a session, as a user would type it."""

from pathlib import Path

import SimpleITK as sitk
from asfda.cli.main import main
from asfda.io.volumes import Geometry


def test_create_rank_predict_label_finetune_evaluate(tmp_path, tiny_dataset, tiny_model, capsys):
    session = str(tmp_path / "session")
    pool = str(tiny_dataset.pool[0][0].parent)
    references = str(tiny_dataset.pool[0][1].parent)
    assert (
        main(
            [
                "create",
                "--session",
                session,
                "--model",
                str(tiny_model),
                "--images",
                pool,
                "--device",
                "cpu",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert "with 4 cases" in capsys.readouterr().out

    table = tmp_path / "ranking.json"
    assert main(["rank", "--session", session, "--device", "cpu", "--output", str(table)]) == 0
    out = capsys.readouterr().out
    assert "DKD" in out and "ASD" in out and "<-" in out and table.is_file()

    image, reference = tiny_dataset.pool[0]
    name = image.name.removesuffix(".nii.gz")
    prediction = tmp_path / "prediction.seg.nrrd"
    assert main(["predict", "--session", session, "--case", name, "--output", str(prediction)]) == 0
    assert (
        Geometry.of(sitk.ReadImage(str(prediction))).mismatch(Geometry.of(sitk.ReadImage(str(image)))) is None
    )

    assert main(["label", "--session", session, "--case", name, "--mask", str(reference)]) == 0
    assert main(["finetune", "--session", session, "--device", "cpu", "--steps", "2"]) == 0
    assert "model version v0001 (parent v0000)" in capsys.readouterr().out

    assert main(["evaluate", "--session", session, "--device", "cpu", "--references", references]) == 0
    assert "mean Dice" in capsys.readouterr().out


def test_errors_name_the_file_and_exit_with_status_2(tmp_path, tiny_dataset, tiny_model, capsys):
    session = str(tmp_path / "session")
    assert (
        main(
            [
                "create",
                "--session",
                session,
                "--model",
                str(tiny_model),
                "--images",
                str(tiny_dataset.pool[0][0].parent),
            ]
        )
        == 0
    )
    image, reference = tiny_dataset.pool[0]
    other = tiny_dataset.test[0][1]  # a real mask, moved onto another grid
    wrong = sitk.ReadImage(str(other))
    wrong.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(wrong, str(tmp_path / "wrong.nii.gz"))
    name = image.name.removesuffix(".nii.gz")
    assert (
        main(["label", "--session", session, "--case", name, "--mask", str(tmp_path / "wrong.nii.gz")]) == 2
    )
    assert "wrong.nii.gz: geometry does not match its case" in capsys.readouterr().err
    assert main(["label", "--session", session, "--case", "nobody", "--mask", str(reference)]) == 2
    assert "no case named 'nobody'" in capsys.readouterr().err
    assert main(["create", "--session", str(tmp_path / "s2"), "--model", str(tmp_path / "missing")]) == 2
    assert "missing: model not found" in capsys.readouterr().err
    assert not Path(tmp_path / "s2" / "session.json").exists()
