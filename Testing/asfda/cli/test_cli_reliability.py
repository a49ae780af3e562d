"""The command line's clear errors (no tracebacks), its session lock, and ``asfda remove``."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import SimpleITK as sitk
from asfda.cli.main import build_parser, main
from asfda.config import FinetuneConfig
from asfda.session.lock import session_lock
from asfda.session.session import AdaptationSession


@pytest.fixture(scope="module")
def made_session(tmp_path_factory, tiny_dataset, tiny_model):
    root = tmp_path_factory.mktemp("cli") / "session"
    session = AdaptationSession.create(root, tiny_model, "cpu")
    session.add_folder(Path(tiny_dataset.pool[0][0]).parent)
    return root


@pytest.fixture
def session(made_session, tmp_path):
    copy = tmp_path / "session"
    shutil.copytree(made_session, copy)
    return copy


def name_of(image) -> str:
    return Path(image).name.removesuffix(".nii.gz")


def test_writing_commands_refuse_while_a_backend_holds_the_session(session, tiny_dataset, capsys):
    image, mask = tiny_dataset.pool[0]
    with session_lock(session):  # what `asfda serve` holds while it runs
        for argv in (
            ["label", "--case", name_of(image), "--mask", str(mask)],
            ["finetune", "--steps", "1"],
            ["add", str(tiny_dataset.test[0][0])],
            ["remove", "--case", name_of(image)],
            ["loop", "--model", "unused", "--images", "unused", "--references", "unused"],
            ["rank"],  # they write scores, the ranking and cached predictions into the session
            ["predict", "--case", name_of(image), "--output", str(session.parent / "p.nii.gz")],
        ):
            assert main([argv[0], "--session", str(session), *argv[1:]]) == 2, argv
            err = capsys.readouterr().err
            assert "backend" in err and "would race it" in err and "Traceback" not in err, err
    assert not (session / "labels" / "final" / "x").exists()
    assert not (session / "scores").exists() or not list((session / "scores").rglob("*.json"))
    assert not (session.parent / "p.nii.gz").exists()
    assert main(["label", "--session", str(session), "--case", name_of(image), "--mask", str(mask)]) == 0


def test_remove_a_case(session, tiny_dataset, capsys):
    image, mask = tiny_dataset.pool[1]
    assert main(["remove", "--session", str(session), "--case", name_of(image)]) == 0
    assert f"removed case {name_of(image)}" in capsys.readouterr().out
    assert name_of(image) not in {r.name for r in AdaptationSession.open(session).store.cases()}
    assert Path(image).is_file()  # the user's file is left alone
    assert main(["remove", "--session", str(session), "--case", name_of(image)]) == 2
    assert f"no case named '{name_of(image)}'" in capsys.readouterr().err
    labelled, label = tiny_dataset.pool[0]
    assert main(["label", "--session", str(session), "--case", name_of(labelled), "--mask", str(label)]) == 0
    assert main(["remove", "--session", str(session), "--case", name_of(labelled)]) == 2
    assert "is labelled" in capsys.readouterr().err


def test_clear_errors_instead_of_tracebacks(session, tiny_dataset, tmp_path, capsys):
    image, _ = tiny_dataset.pool[0]
    assert main(["predict", "--session", str(session), "--case", name_of(image), "--output", "pred.png"]) == 2
    assert "pred.png: cannot hold a 3D label map" in capsys.readouterr().err
    missing = tmp_path / "missing"
    assert main(["evaluate", "--session", str(session), "--references", str(missing)]) == 2
    assert f"{missing}: not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--session", str(session), "--references", str(empty)]) == 2
    assert "no reference mask is named like a volume" in capsys.readouterr().err


def test_mask_geometry_message_has_plain_numbers(session, tiny_dataset, tmp_path, capsys):
    image, mask = tiny_dataset.pool[0]
    moved = sitk.ReadImage(str(mask))
    moved.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    assert (
        main(
            [
                "label",
                "--session",
                str(session),
                "--case",
                name_of(image),
                "--mask",
                str(tmp_path / "moved.nii.gz"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "spacing (2.0, 2.0, 2.0)" in err and "np.float64" not in err, err


def test_create_names_the_duplicate_file(tmp_path, tiny_dataset, tiny_model, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    first, second = tiny_dataset.pool[0][0], tiny_dataset.pool[1][0]
    shutil.copy(first, folder / "a.nii.gz")
    shutil.copy(first, folder / "b.nii.gz")  # byte-identical to a
    shutil.copy(second, folder / "c.nii.gz")
    argv = ["create", "--session", str(tmp_path / "s"), "--model", str(tiny_model), "--images", str(folder)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "with 2 cases" in out
    assert f"{folder / 'b.nii.gz'} has the same voxels as {folder / 'a.nii.gz'}" in out


def test_an_interrupted_round_is_reported_by_the_next_command(session, capsys):
    dead_pid = 2**22 + 12345
    store = AdaptationSession.open(session).store
    store.log("round_started", round=1, parent="v0000", labelled=[], reliable=[], pid=dead_pid)
    assert main(["evaluate", "--session", str(session), "--references", str(session / "nowhere")]) == 2
    assert "round 1 was interrupted" in capsys.readouterr().err


def test_a_read_only_session_gives_a_clear_error(tmp_path, made_session, tiny_dataset, capsys):
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root")
    disk = tmp_path / "ro"
    disk.mkdir()
    name = f"asfda-test-{uuid.uuid4().hex[:6]}"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", name, str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        shutil.copytree(made_session, disk / "session")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        image, mask = tiny_dataset.pool[0]
        root = str(disk / "session")
        for argv in (
            ["rank", "--session", root, "--device", "cpu"],
            ["predict", "--session", root, "--case", name_of(image), "--output", str(tmp_path / "p.nii.gz")],
        ):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "Read-only file system" in err and "Traceback" not in err, err
        assert main(["label", "--session", root, "--case", name_of(image), "--mask", str(mask)]) == 2
        assert "Read-only file system" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_help_texts_say_the_defaults():
    parser = build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["loop"]._actions}
    assert all(actions[name].help for name in ("steps", "rounds", "budget", "strategy", "model"))
    finetune = {a.dest: a for a in parser._subparsers._group_actions[0].choices["finetune"]._actions}
    shipped = FinetuneConfig()
    assert f"{shipped.steps} + {shipped.steps_per_labelled} per labelled case" in finetune["steps"].help
