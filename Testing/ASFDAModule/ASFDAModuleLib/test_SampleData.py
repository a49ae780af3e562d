"""Sample data: registered with Slicer's Sample Data module, and the committed files it points at are real.

Sample Data itself is a module of the Slicer application; the registration goes to a recording double with
its ``registerCustomSampleDataSource`` signature. The files are read with MRML (slicer-core) and the engine.
"""

from __future__ import annotations

import hashlib
import inspect
import zipfile

import pytest
from ASFDAModuleLib import SampleData
from module_paths import ROOT, importSlicerCore

SAMPLE_FOLDER = ROOT / "Resources" / "SampleData"


class RecordingSampleDataLogic:
    sources: list = []

    @classmethod
    def registerCustomSampleDataSource(
        cls,
        category="Custom",
        sampleName=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        thumbnailFileName=None,
        loadFileType="VolumeFile",
        customDownloader=None,
        checksums=None,
        loadFiles=None,
    ):  # the signature of Slicer 5's SampleDataLogic.registerCustomSampleDataSource
        cls.sources.append(dict(inspect.currentframe().f_locals))


def test_three_samples_are_registered_with_checksums_of_the_committed_files():
    RecordingSampleDataLogic.sources = []
    assert SampleData.registerSampleData(RecordingSampleDataLogic) == 3

    for source in RecordingSampleDataLogic.sources:
        [fileName] = source["fileNames"]
        data = (SAMPLE_FOLDER / fileName).read_bytes()
        assert source["checksums"] == [f"SHA256:{hashlib.sha256(data).hexdigest()}"]
        assert source["uris"] == [SampleData.BASE_URL + fileName] and source["category"] == "ASFDA"
    assert [s["loadFileType"] for s in RecordingSampleDataLogic.sources] == [
        "VolumeFile",
        "VolumeFile",
        "ZipFile",
    ]


def test_the_sample_volumes_are_real_brains_on_a_3_mm_grid(mrml):
    slicer = importSlicerCore()
    for name in ("ICBM152-T1-3mm.nii.gz", "ICBM152-T2-3mm.nii.gz"):
        node = mrml.volumesLogic.AddArchetypeVolume(str(SAMPLE_FOLDER / name), name, 0)
        array = slicer.util.arrayFromVolume(node)
        assert node.GetSpacing() == pytest.approx((3.0, 3.0, 3.0)) and array.shape == (64, 76, 64)
        assert 0.15 < (array > 100).mean() < 0.6  # a head fills a good part of the box, not all of it


def test_the_sample_model_zip_is_the_committed_source_model_and_the_engine_loads_it(tmp_path):
    from asfda.models.loading import load_model
    from ASFDAModuleLib.Paths import checkModelPath

    with zipfile.ZipFile(SAMPLE_FOLDER / "ASFDASourceModel.zip") as archive:
        archive.extractall(tmp_path / "model")
    for name in ("asfda_model.json", "model.pt", "README.md"):
        assert (tmp_path / "model" / name).read_bytes() == (
            ROOT / "Resources" / "SourceModel" / name
        ).read_bytes()
    model = load_model(checkModelPath(tmp_path / "model"))
    assert model.spec.labels[2] == "cortex"
