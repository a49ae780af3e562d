"""Paths the user types or picks: unset is empty, a model is a folder or a TorchScript file."""

from __future__ import annotations

import pathlib

import pytest
from ASFDAModuleLib.Paths import checkModelPath, pathOrNone, pathText


@pytest.mark.parametrize("unset", [None, "", ".", "  ", pathlib.Path()])
def test_unset_paths_are_none_and_show_empty(unset):
    assert pathOrNone(unset) is None and pathText(unset) == ""


def test_a_model_is_a_folder_or_a_torchscript_file(tmp_path):
    from module_paths import ROOT

    scripted = tmp_path / "model.ts"
    scripted.write_bytes(b"PK")
    assert checkModelPath(ROOT / "Resources" / "SourceModel") == ROOT / "Resources" / "SourceModel"
    assert checkModelPath(str(scripted)) == scripted
    assert checkModelPath("") is None
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match=r"model .*model.onnx: not a TorchScript file"):
        checkModelPath(weights)
    with pytest.raises(ValueError, match="no such file or folder"):
        checkModelPath(tmp_path / "nothing")


def test_the_model_field_offers_files_and_folders():
    """Defect: the field accepted folders only while its tooltip offered a TorchScript file."""
    import xml.etree.ElementTree as ElementTree

    from module_paths import MODULE_DIR

    ui = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "ASFDAModule.ui")
    field = next(w for w in ui.iter("widget") if w.get("name") == "modelPathLineEdit")
    filters = next(p for p in field.iter("property") if p.get("name") == "filters").findtext("set")
    nameFilters = [
        s.text
        for s in next(p for p in field.iter("property") if p.get("name") == "nameFilters").iter("string")
    ]
    assert "ctkPathLineEdit::Files" in filters and "ctkPathLineEdit::Dirs" in filters
    assert nameFilters == ["TorchScript model (*.ts *.torchscript *.pt *.pth)"]
    assert any(w.get("name") == "modelFolderButton" for w in ui.iter("widget"))  # folders: their own dialog


def test_a_write_the_module_leaves_behind_is_a_temporary_the_session_sweeps(tmp_path, monkeypatch):
    """The module writes case marks, edit efforts and imported volumes into the session folder; what a crash
    between the write and the rename leaves must carry the engine's temporary name, so opening the session
    removes it (it did not: mkstemp's own names were left forever)."""
    import os

    from asfda.session.temporaries import temporary_owner
    from ASFDAModuleLib.Paths import replaceJson, temporaryName

    marks = tmp_path / "slicer" / "case_marks.json"

    def crash(*args):
        raise OSError("killed between the write and the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        replaceJson(marks, [{"caseId": "c1", "mark": "skipped"}])
    (leftover,) = marks.parent.iterdir()
    assert temporary_owner(leftover.name) == os.getpid() and not marks.exists()
    volume = temporaryName(tmp_path / "imports" / "case.nii.gz", ".nii.gz") + "part.nii.gz"
    assert temporary_owner(volume) == os.getpid() and volume.endswith(".nii.gz")
