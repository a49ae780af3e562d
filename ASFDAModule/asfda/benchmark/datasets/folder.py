"""Any folder of images and labels as a benchmark dataset (``asfda benchmark --dataset MY_FOLDER``).

A site replays the campaign on cases it has already labelled before it commits annotators to the real one.
A folder with a ``dataset.json`` (made by ``asfda make-dataset``) is used as it is. Otherwise it must hold
``images/`` and ``labels/`` (or nnU-Net's ``imagesTr/`` and ``labelsTr/``) with labels named like their
images (nnU-Net's ``_0000`` channel suffix is ignored); the pairs are split once, by a seeded permutation,
into pool, validation and test, and the split is written (as links to the original files, never copies or
changes) under the benchmark's work folder so that every run reads the same split.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...errors import ASFDAError
from ...io.volumes import VOLUME_SUFFIXES, case_name, volume_suffix
from ...session.store import write_json_atomic
from .layout import DATASET_FILE, DatasetLayout, Split, dataset_layout

FOLDER_PAIRS = (("images", "labels"), ("imagesTr", "labelsTr"))


def _name(path: Path) -> str:
    name = case_name(path)
    return name[:-5] if name.endswith("_0000") else name


def folder_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a plain folder, matched by case name; refuses a folder with none."""
    for images_name, labels_name in FOLDER_PAIRS:
        images, labels = folder / images_name, folder / labels_name
        if images.is_dir() and labels.is_dir():
            break
    else:
        raise ASFDAError(
            "not a dataset: no dataset.json and no images/ + labels/ (or imagesTr/ + labelsTr/) folders",
            folder,
        )
    label_by_name = {_name(p): p for p in labels.iterdir() if volume_suffix(p) in VOLUME_SUFFIXES}
    pairs = [
        (p, label_by_name[_name(p)])
        for p in sorted(images.iterdir())
        if volume_suffix(p) in VOLUME_SUFFIXES and _name(p) in label_by_name
    ]
    if len(pairs) < 3:
        raise ASFDAError(f"{len(pairs)} image/label pairs found; a benchmark needs at least 3", folder)
    return pairs


def split_counts(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int, int]:
    """(pool, val, test) counts: at least one pool and one test case."""
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    n_val = min(round(val_fraction * n), n - n_test - 1)
    return n - n_test - n_val, n_val, n_test


def prepare_folder_dataset(
    folder: Path, out: Path, seed: int = 0, test_fraction: float = 0.3, val_fraction: float = 0.1
) -> Path:
    """Write the split of a plain folder into ``out`` (links + dataset.json); returns ``out``."""
    folder = Path(folder).resolve()
    pairs = folder_pairs(folder)
    key = {
        "source_folder": str(folder),
        "seed": seed,
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
    }
    existing = out / DATASET_FILE
    if existing.is_file() and json.loads(existing.read_text()).get("config") == key:
        return out
    n_pool, n_val, _ = split_counts(len(pairs), test_fraction, val_fraction)
    order = np.random.default_rng(seed).permutation(len(pairs))
    splits = {
        Split.POOL: order[:n_pool],
        Split.VALIDATION: order[n_pool : n_pool + n_val],
        Split.TEST: order[n_pool + n_val :],
    }
    cases: dict[str, list[dict]] = {split.value: [] for split in Split}
    for split, indices in splits.items():
        for index in sorted(indices):
            image, label = pairs[index]
            entry = {"name": _name(image), "source": str(image.parent)}
            for kind, path in (("images", image), ("labels", label)):
                link = out / split.folder / kind / (_name(image) + volume_suffix(path))
                link.parent.mkdir(parents=True, exist_ok=True)
                if link.is_symlink() or link.exists():
                    link.unlink()
                os.symlink(path, link)
                entry["image" if kind == "images" else "label"] = link.relative_to(out).as_posix()
            cases[split.value].append(entry)
    labels = {"0": "background"}
    write_json_atomic(
        existing,
        {
            "name": f"folder:{folder.name}",
            "labels": labels,
            "spacing_mm": 0.0,
            "size": [],
            "cases": cases,
            "counts": {split: len(entries) for split, entries in cases.items()},
            "config": key,
        },
    )
    return out


def as_benchmark_dataset(dataset: Path, work: Path, seed: int = 0) -> Path:
    """The folder the runs read: ``dataset`` itself when it has a dataset.json, else its prepared split."""
    dataset = Path(dataset)
    if (dataset / DATASET_FILE).is_file():
        return dataset
    return prepare_folder_dataset(dataset, Path(work) / "dataset", seed)


def open_dataset(root: Path) -> DatasetLayout:
    return dataset_layout(root)
