"""The sub-populations of the site benchmark: what a hospital's archive of brain MRI looks like.

Most of an archive is the routine protocol of the main scanner; a few other protocols are common enough to
matter (a post-processed export without skull, an older proton-density protocol, a FLAIR); and a handful of
rare, hard modes each make up a few percent: legacy thick axial slices, a partial field of view, strong
motion, an atrophic brain with enlarged ventricles, and someone whose anatomy differs from everything seen
before (fsaverage, the second real anatomy here). Random selection spends its budget on the majority; a
good query covers the rare modes. Each :class:`SubPopulation` states its prevalence and why it is hard;
:func:`draw_site_protocol` draws one case's acquisition from its own seed (pure, reproducible).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np

from .protocols import Contrast, Protocol, ProtocolRanges
from .sources import BrainClass


class Anatomy(str, Enum):
    ICBM152 = "icbm152"
    FSAVERAGE = "fsaverage"


@dataclass(frozen=True)
class SubPopulation:
    """A named part of the site's archive: its share of the pool and the acquisition it stands for.

    Ranges are (low, high), drawn uniformly per case; a thickness of 0 means the isotropic base grid.
    """

    name: str
    prevalence: float
    why: str  # what makes it hard, and where such scans come from
    anatomy: Anatomy = Anatomy.ICBM152
    contrast: Contrast = Contrast.T2
    skull_stripped: bool = False
    slice_thickness_mm: tuple[float, float] = (0.0, 0.0)
    fov_kept: tuple[float, float] = (1.0, 1.0)
    ghost: tuple[float, float] = (0.0, 0.0)
    ventricle_expansion_mm: tuple[float, float] = (0.0, 0.0)

    def to_json(self) -> dict:
        return {
            key: (value.value if isinstance(value, Enum) else value) for key, value in asdict(self).items()
        }


SITE_SUBPOPULATIONS: tuple[SubPopulation, ...] = (
    SubPopulation(
        "routine_t2",
        0.50,
        "the main scanner's routine T2 with skull: half the archive, the contrast the source model never saw",
    ),
    SubPopulation(
        "skull_stripped_t2",
        0.14,
        "T2 exported after a research pipeline's skull stripping: no scalp or skull around the brain",
        skull_stripped=True,
    ),
    SubPopulation(
        "pd_weighted",
        0.10,
        "an older protocol's proton-density-like contrast: little grey/white contrast, CSF mildly bright",
        contrast=Contrast.PD_LIKE,
    ),
    SubPopulation(
        "flair",
        0.06,
        "FLAIR ordered for white-matter disease: fluid dark again, so ventricles look like T1's, tissue T2's",
        contrast=Contrast.FLAIR_LIKE,
    ),
    SubPopulation(
        "legacy_thick_slices",
        0.05,
        "a legacy 2-D axial protocol with 5-7 mm slices: small structures (brainstem, fourth ventricle, "
        "cortex) blur into their neighbours through the plane",
        slice_thickness_mm=(5.0, 7.0),
    ),
    SubPopulation(
        "partial_fov",
        0.05,
        "a targeted acquisition that keeps 55-75 % of the head along one axis: whole structures missing, "
        "the brain cut at the edge of the volume",
        fov_kept=(0.55, 0.75),
    ),
    SubPopulation(
        "strong_motion",
        0.04,
        "an uncooperative or sedated patient: strong phase-encode ghosts overlay a shifted copy of the head",
        ghost=(0.25, 0.4),
    ),
    SubPopulation(
        "atrophy",
        0.03,
        "an elderly or neurodegenerative patient: ventricles enlarged by 4-7 mm at their walls (a "
        "deformation driven by the ventricle labels), deep grey matter and white matter pushed outwards",
        ventricle_expansion_mm=(4.0, 7.0),
    ),
    SubPopulation(
        "fsaverage",
        0.03,
        "a second real anatomy (FreeSurfer's fsaverage) with its own T2-like appearance: other shapes, "
        "proportions and texture than the one template every other case is drawn from",
        anatomy=Anatomy.FSAVERAGE,
    ),
)

# The routine protocol's spread: mild, as on one well-kept scanner; the hard modes add their own trouble.
SITE_RANGES = ProtocolRanges(
    bias_range=(0.0, 0.3),
    gamma_range=(0.8, 1.25),
    noise_range=(0.0, 0.04),
    max_rotation_deg=10.0,
    max_scaling=0.1,
    elastic_displacement_mm=3.0,
)
AXIAL = 2  # SimpleITK (x, y, z): legacy 2-D protocols cut axial slices


def check_prevalences(subpopulations: tuple[SubPopulation, ...]) -> None:
    names = [s.name for s in subpopulations]
    if len(set(names)) != len(names):
        raise ValueError(f"sub-population names repeat: {names}")
    if any(s.prevalence <= 0 for s in subpopulations):
        raise ValueError("every sub-population needs a positive prevalence")
    total = sum(s.prevalence for s in subpopulations)
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"prevalences sum to {total:g}, not 1")


def apportion(prevalences: list[float], total: int) -> list[int]:
    """Counts that sum to ``total`` and follow ``prevalences`` (Hamilton's largest-remainder rounding), so
    the pool has each sub-population's stated share up to one case, whatever its seed."""
    quotas = [p * total for p in prevalences]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (counts[i] - quotas[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _between(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(rng.uniform(low, high)) if high > low else float(low)


def draw_site_protocol(
    seed: int, subpopulation: SubPopulation, ranges: ProtocolRanges, base_spacing_mm: float
) -> Protocol:
    """One case's acquisition: the sub-population's defining trait plus the routine spread of bias,
    gamma and noise. Thick slices are never finer than the base grid."""
    rng = np.random.default_rng(seed)
    thickness = _between(rng, subpopulation.slice_thickness_mm)
    contrast = subpopulation.contrast
    return Protocol(
        contrast=contrast.value,
        skull_stripped=subpopulation.skull_stripped,
        slice_thickness_mm=max(thickness, base_spacing_mm),
        slice_axis=AXIAL,
        fov_kept=_between(rng, subpopulation.fov_kept),
        fov_axis=int(rng.integers(3)),
        fov_keep_low_side=bool(rng.random() < 0.5),
        bias=_between(rng, ranges.bias_range),
        gamma=_between(rng, ranges.gamma_range),
        noise=_between(rng, ranges.noise_range),
        ghost=_between(rng, subpopulation.ghost),
        mix=_between(rng, (0.5, 0.75) if contrast is Contrast.PD_LIKE else (0.7, 0.95)),
    )


def enlarge_ventricles(
    volumes: dict, labels: np.ndarray, expansion_voxels: float, sigma_voxels: float
) -> tuple[dict, np.ndarray]:
    """Atrophy as a label-driven deformation: every voxel near the ventricles samples from closer to them,
    so the ventricles grow by about ``expansion_voxels`` at their walls and the tissue around is pushed out
    (smoothly: the field is the gradient of the blurred ventricle mask). Volumes linearly, labels by nearest
    neighbour, both through the same field."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    ventricles = gaussian_filter((labels == BrainClass.VENTRICLES).astype(np.float64), sigma_voxels)
    gradient = np.stack(np.gradient(ventricles))
    magnitude = np.sqrt((gradient**2).sum(0))
    if magnitude.max() <= 0:
        return volumes, labels
    displacement = gradient * (expansion_voxels / magnitude.max())
    coordinates = np.indices(labels.shape).astype(np.float64) + displacement
    warped = {
        key: map_coordinates(volume, coordinates, order=1, mode="nearest").astype(np.float32)
        for key, volume in volumes.items()
    }
    return warped, map_coordinates(labels, coordinates, order=0, mode="nearest").astype(labels.dtype)
