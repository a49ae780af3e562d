"""The heterogeneous dataset: protocols drawn within their ranges, anisotropic thick slices, partial fields
of view, metadata in dataset.json, and any folder of images + labels as a dataset."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.benchmark.datasets.folder import as_benchmark_dataset, split_counts
from asfda.benchmark.datasets.heterogeneous import (
    HeterogeneousConfig,
    build_heterogeneous,
    plan_heterogeneous,
)
from asfda.benchmark.datasets.layout import dataset_layout
from asfda.benchmark.datasets.protocols import ProtocolRanges, crop_field_of_view, draw_protocol, thick_slices
from asfda.errors import ASFDAError


def test_protocols_cover_the_ranges_and_are_seeded():
    ranges = ProtocolRanges()
    protocols = [draw_protocol(seed, ranges, 2.0) for seed in range(300)]
    assert draw_protocol(7, ranges, 2.0) == draw_protocol(7, ranges, 2.0)
    assert {p.contrast for p in protocols} == {"t2", "pd_like", "flair_like"}
    assert {p.skull_stripped for p in protocols} == {True, False}
    thickness = {p.slice_thickness_mm for p in protocols}
    assert min(thickness) == 2.0 and max(thickness) == 6.0  # never finer than the base grid
    assert 0.15 < np.mean([p.fov_kept < 1 for p in protocols]) < 0.45
    assert 0.1 < np.mean([p.ghost > 0 for p in protocols]) < 0.4


def test_thick_slices_and_partial_fov_keep_labels_on_the_image_grid():
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    label = sitk.GetImageFromArray((np.arange(8000).reshape(20, 20, 20) % 3).astype(np.uint8))
    image.SetSpacing((2.0, 2.0, 2.0))
    label.CopyInformation(image)
    thick_image, thick_label = thick_slices(image, label, 6.0, axis=2)
    assert thick_image.GetSpacing() == (2.0, 2.0, 6.0) and thick_image.GetSize() == (20, 20, 7)
    assert (
        thick_label.GetSize() == thick_image.GetSize() and thick_label.GetOrigin() == thick_image.GetOrigin()
    )
    cropped, cropped_label = crop_field_of_view(image, label, 0.5, axis=0, keep_low_side=False)
    assert cropped.GetSize() == (10, 20, 20) and cropped_label.GetSize() == (10, 20, 20)
    assert cropped.GetOrigin()[0] == pytest.approx(20.0)  # physical position kept


def test_a_tiny_heterogeneous_build_records_protocol_and_source(tmp_path):
    config = HeterogeneousConfig(n_pool=2, n_val=1, n_test=1, spacing_mm=6.0, seed=3)
    assert [p.name for p in plan_heterogeneous(config)] == ["tgt_000", "tgt_001", "val_000", "tst_000"]
    build_heterogeneous(tmp_path, config, progress=False)
    layout = dataset_layout(tmp_path)
    assert (len(layout.pool), len(layout.val), len(layout.test)) == (2, 1, 1)
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    case = manifest["cases"]["pool"][0]
    assert case["source"].startswith("ICBM152") and "slice_thickness_mm" in case["protocol"]
    assert layout.metadata["tgt_000"]["protocol"] == case["protocol"]
    image = sitk.ReadImage(str(layout.pool[0][0]))
    label = sitk.ReadImage(str(layout.pool[0][1]))
    assert image.GetSize() == label.GetSize() and image.GetSpacing() == label.GetSpacing()
    assert set(np.unique(sitk.GetArrayFromImage(label))) <= set(range(7))


def test_any_folder_of_images_and_labels_is_split_once_into_pool_val_test(tmp_path):
    source = tmp_path / "site"
    for kind in ("imagesTr", "labelsTr"):
        (source / kind).mkdir(parents=True)
    for i in range(10):
        volume = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32))
        sitk.WriteImage(volume, str(source / "imagesTr" / f"case_{i}_0000.nii.gz"))
        sitk.WriteImage(sitk.Cast(volume, sitk.sitkUInt8), str(source / "labelsTr" / f"case_{i}.nii.gz"))
    root = as_benchmark_dataset(source, tmp_path / "work")
    layout = dataset_layout(root)
    assert (len(layout.pool), len(layout.val), len(layout.test)) == (6, 1, 3)
    names = {p[0].name.split(".")[0] for p in (*layout.pool, *layout.val, *layout.test)}
    assert len(names) == 10 and all(p[0].resolve().parent == source / "imagesTr" for p in layout.pool)
    assert as_benchmark_dataset(source, tmp_path / "work") == root  # the same split next time
    assert split_counts(3, 0.3, 0.1) == (2, 0, 1)
    with pytest.raises(ASFDAError, match="not a dataset"):
        as_benchmark_dataset(tmp_path / "work", tmp_path / "other")
