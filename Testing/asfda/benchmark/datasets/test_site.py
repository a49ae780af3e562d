"""The site benchmark's plan: prevalences, stratified test and validation splits, disjoint seed streams, and
the label-driven atrophy. Planning is pure (no voxels), so these run in milliseconds."""

import numpy as np
import pytest
from asfda.benchmark.datasets.heterogeneous import HeterogeneousConfig, plan_heterogeneous
from asfda.benchmark.datasets.layout import Split
from asfda.benchmark.datasets.site import SiteConfig, plan_site, split_subpopulations
from asfda.benchmark.datasets.sources import BrainClass
from asfda.benchmark.datasets.subpopulations import (
    SITE_SUBPOPULATIONS,
    Anatomy,
    SubPopulation,
    apportion,
    enlarge_ventricles,
)


def test_stated_prevalences_sum_to_one_and_rare_modes_are_rare():
    prevalences = {s.name: s.prevalence for s in SITE_SUBPOPULATIONS}
    assert sum(prevalences.values()) == pytest.approx(1.0)
    assert max(prevalences, key=prevalences.get) == "routine_t2" and prevalences["routine_t2"] >= 0.5
    rare = ("legacy_thick_slices", "partial_fov", "strong_motion", "atrophy", "fsaverage")
    assert all(prevalences[name] <= 0.05 for name in rare)
    assert {s.anatomy for s in SITE_SUBPOPULATIONS} == {Anatomy.ICBM152, Anatomy.FSAVERAGE}
    with pytest.raises(ValueError, match="sum"):
        SiteConfig(subpopulations=(SubPopulation("a", 0.5, "x"), SubPopulation("b", 0.4, "y")))


def test_pool_follows_the_prevalences():
    config = SiteConfig(n_pool=60)
    pool = [case.subpopulation.name for case in plan_site(config) if case.split is Split.POOL]
    counts = {name: pool.count(name) for name in set(pool)}
    assert len(pool) == 60
    for subpopulation in SITE_SUBPOPULATIONS:
        assert abs(counts.get(subpopulation.name, 0) - 60 * subpopulation.prevalence) < 1.0
    assert counts["routine_t2"] == 30 and counts["fsaverage"] == 2
    # shuffled, not in blocks: the routine cases are not all at the start
    assert pool[:30].count("routine_t2") < 30
    assert apportion([0.5, 0.3, 0.2], 7) == [4, 2, 1] and sum(apportion([0.97, 0.03], 10)) == 10


def test_test_and_validation_are_stratified_with_five_cases_of_every_subpopulation():
    plans = plan_site(SiteConfig())
    for split in (Split.TEST, Split.VALIDATION):
        names = [case.subpopulation.name for case in plans if case.split is split]
        assert {name: names.count(name) for name in names} == {s.name: 5 for s in SITE_SUBPOPULATIONS}


def test_seed_streams_are_disjoint_and_cases_do_not_change_with_counts():
    plans = plan_site(SiteConfig())
    seeds = {split: {case.seed for case in plans if case.split is split} for split in Split}
    assert not seeds[Split.POOL] & seeds[Split.TEST]
    assert not seeds[Split.POOL] & seeds[Split.VALIDATION]
    assert not seeds[Split.VALIDATION] & seeds[Split.TEST]
    heterogeneous = {case.seed for case in plan_heterogeneous(HeterogeneousConfig())}
    assert not heterogeneous & set().union(*seeds.values())
    # more test cases per sub-population: the first ones keep their seeds and protocols
    bigger = plan_site(SiteConfig(n_test=6))
    first = {case.name: case for case in plans if case.split is Split.TEST}
    again = {case.name: case for case in bigger if case.split is Split.TEST and case.name in first}
    assert all(first[name] == again[name] for name in first)
    assert plan_site(SiteConfig()) == plans  # a pure function of the config


def test_each_subpopulation_gets_its_trait():
    plans = plan_site(SiteConfig(spacing_mm=2.0))
    by_mode = {}
    for case in plans:
        by_mode.setdefault(case.subpopulation.name, []).append(case.protocol)
    assert all(p.slice_thickness_mm >= 5.0 and p.slice_axis == 2 for p in by_mode["legacy_thick_slices"])
    assert all(p.slice_thickness_mm == 2.0 for p in by_mode["routine_t2"])
    assert all(0.55 <= p.fov_kept <= 0.75 for p in by_mode["partial_fov"])
    assert all(p.fov_kept == 1.0 and p.ghost == 0.0 for p in by_mode["routine_t2"])
    assert all(p.ghost >= 0.25 for p in by_mode["strong_motion"])
    assert all(p.skull_stripped for p in by_mode["skull_stripped_t2"])
    assert {p.contrast for p in by_mode["pd_weighted"]} == {"pd_like"}
    assert {p.contrast for p in by_mode["flair"]} == {"flair_like"}


def test_pool_order_has_its_own_stream():
    a = split_subpopulations(SiteConfig(seed=0), Split.POOL)
    b = split_subpopulations(SiteConfig(seed=1), Split.POOL)
    assert sorted(a) == sorted(b) and a != b


def test_atrophy_enlarges_the_ventricles_and_moves_labels_with_the_image():
    labels = np.full((40, 40, 40), BrainClass.OTHER_IN_BRAIN, dtype=np.uint8)
    labels[:2], labels[-2:] = BrainClass.BACKGROUND, BrainClass.BACKGROUND
    labels[17:23, 14:26, 17:23] = BrainClass.VENTRICLES
    image = np.where(labels == BrainClass.VENTRICLES, 1.0, 0.3).astype(np.float32)
    volumes, warped = enlarge_ventricles({"t2": image}, labels, expansion_voxels=3.0, sigma_voxels=4.0)
    before, after = (labels == BrainClass.VENTRICLES).sum(), (warped == BrainClass.VENTRICLES).sum()
    assert after > 1.5 * before
    bright = volumes["t2"] > 0.65
    agreement = (bright == (warped == BrainClass.VENTRICLES)).mean()
    assert agreement > 0.995  # the image's bright CSF and the ventricle labels moved together
    assert (warped == BrainClass.BACKGROUND).sum() == (labels == BrainClass.BACKGROUND).sum()
