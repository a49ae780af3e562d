"""Paths and the slicer-core import shared by the module's tests (a plain module: ``conftest`` is a name
several test folders use, so tests never import from it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "ASFDAModule"
TESTING_DIR = Path(__file__).resolve().parent

# Slicer puts the module's folder on sys.path; so do the tests (ASFDAModule.py, ASFDAModuleLib, asfda).
for path in (MODULE_DIR, TESTING_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def importSlicerCore():
    """The real ``slicer`` package of the ``slicer-core`` wheel, or a skip saying that it is missing."""
    slicer = pytest.importorskip(
        "slicer", reason="slicer-core is not installed (pip install -r Testing/requirements-slicer.txt)"
    )
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the 'slicer' package found is not slicer-core (no vtkMRMLScene)")
    return slicer
