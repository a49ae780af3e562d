"""Where a built benchmark dataset's cases are: the splits, the layout every builder's ``dataset.json``
describes, and reading it back. Shared by the builders (dataset.py, heterogeneous.py, site.py), any labelled
folder (folder.py) and the runs, none of which needs the drawing of cases to find them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ...errors import ASFDAError
from .sources import LABEL_NAMES

DATASET_FILE = "dataset.json"


class Split(str, Enum):
    """The three sets of cases. Pool and test are both target domain but never share a random stream."""

    SOURCE = "source"
    POOL = "pool"
    TEST = "test"
    VALIDATION = "val"  # held-out target cases for choosing among arms (never the test set)

    @property
    def folder(self) -> str:
        return {"source": "source", "pool": "target/pool", "test": "target/test", "val": "target/val"}[
            self.value
        ]

    @property
    def prefix(self) -> str:
        return {"source": "src", "pool": "tgt", "test": "tst", "val": "val"}[self.value]


@dataclass(frozen=True)
class DatasetLayout:
    """Where a built dataset's cases are: (image, label) path pairs for each split, in case order."""

    root: Path
    labels: dict[int, str]
    source: tuple[tuple[Path, Path], ...]
    pool: tuple[tuple[Path, Path], ...]
    test: tuple[tuple[Path, Path], ...]
    spacing_mm: float = 0.0
    size: tuple[int, ...] = field(default=())
    val: tuple[tuple[Path, Path], ...] = ()
    # case name -> protocol, source and (site builder) sub-population, where recorded
    metadata: dict[str, dict] = field(default_factory=dict)

    def split(self, split: Split | str) -> tuple[tuple[Path, Path], ...]:
        return getattr(self, Split(split).value)

    def pairs(self) -> Iterator[tuple[Split, Path, Path]]:
        for split in Split:
            for image, label in self.split(split):
                yield split, image, label


def read_manifest(out_dir: str | Path) -> dict | None:
    """The parsed dataset.json, or None when there is no finished build in ``out_dir``."""
    path = Path(out_dir) / DATASET_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise ASFDAError(f"unreadable dataset description ({error})", path) from error


def manifest_header(name: str, format_version: int, config, size) -> dict:
    """The head of every builder's dataset.json: which builder and format, the label names, the grid and the
    seed (``config`` has ``spacing_mm`` and ``seed``)."""
    return {
        "name": name,
        "format_version": format_version,
        "labels": {str(int(value)): label for value, label in LABEL_NAMES.items()},
        "spacing_mm": config.spacing_mm,
        "size": list(size),
        "seed": config.seed,
    }


def manifest_matches(root: str | Path, name: str, format_version: int, config: dict) -> bool:
    """Whether ``root`` holds a finished build of the builder ``name`` (at ``format_version``) and ``config``
    (its JSON form); an unreadable description counts as no build."""
    try:
        manifest = read_manifest(root)
    except Exception:
        return False
    return bool(
        manifest
        and manifest.get("name") == name
        and manifest.get("format_version") == format_version
        and manifest.get("config") == config
    )


def dataset_layout(out_dir: str | Path) -> DatasetLayout:
    """The layout of a finished build, read from its dataset.json (the only proof that it finished)."""
    root = Path(out_dir)
    manifest = read_manifest(root)
    if manifest is None:
        raise ASFDAError(
            f"no finished dataset here (no {DATASET_FILE}): run asfda make-dataset --out {root}", root
        )
    cases = manifest["cases"]
    pairs = {
        split: tuple((root / case["image"], root / case["label"]) for case in cases.get(split.value, []))
        for split in Split
    }
    metadata = {
        case["name"]: {"split": split.value}
        | {k: case[k] for k in ("protocol", "source", "subpopulation") if k in case}
        for split in Split
        for case in cases.get(split.value, [])
        if "name" in case
    }
    return DatasetLayout(
        root=root,
        labels={int(value): name for value, name in manifest["labels"].items()},
        source=pairs[Split.SOURCE],
        pool=pairs[Split.POOL],
        test=pairs[Split.TEST],
        spacing_mm=float(manifest["spacing_mm"]),
        size=tuple(manifest["size"]),
        val=pairs[Split.VALIDATION],
        metadata=metadata,
    )
