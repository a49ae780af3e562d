"""Training patches of a round: each case padded and indexed once, then only cropped at every step.

Padding to the patch size and the foreground/background voxel lists that ``RandCropByPosNegLabeld`` draws
crop centres from depend on the case alone, not on the step, so they are computed the first time a case is
drawn and kept for the round (a step used to redo both on the whole volume: about 8 ms a patch for a
59x72x59 volume, beside a 130 to 550 ms step). Patches come out as plain tensors: a MONAI ``MetaTensor``
would route every operation of the forward and backward pass through its metadata bookkeeping (5 to 8 %
of a step), and training needs no affine. The crops, and the random numbers they consume, are those of the
transforms the trainer used before, so the same seed gives the same patches. The cost is memory: the voxel
lists hold 8 bytes a voxel of each labelled case while the round lasts (16 MiB for a 128^3 volume); a case
already as large as the patch is not copied.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Compose, RandCropByPosNegLabeld, RandSpatialCropd, SpatialPad
from monai.transforms.utils import map_binary_to_indices

from ..io.preprocessing import IMAGE, LABEL, ModelSpaceCase

FOREGROUND, BACKGROUND = "foreground_indices", "background_indices"


class PatchSampler:
    """Random patches of cases; what does not change between steps is prepared once per case."""

    def __init__(self, patch_size, crop: Compose, indexed: bool):
        self.pad = SpatialPad(spatial_size=patch_size)
        self.crop = crop
        self.indexed = indexed  # the crop draws its centres from foreground/background voxel lists
        self._prepared: dict[int, tuple[ModelSpaceCase, dict[str, torch.Tensor]]] = {}

    def set_random_state(self, seed: int | None = None, state=None) -> PatchSampler:
        self.crop.set_random_state(seed=seed, state=state)
        return self

    def prepared(self, case: ModelSpaceCase, with_labels: bool) -> dict[str, torch.Tensor]:
        """The case padded to the patch size, as plain tensors, with its voxel lists (kept by identity: the
        case object holds the round's tensors and lives as long as the round)."""
        kept = self._prepared.get(id(case))
        if kept is not None and kept[0] is case:
            return kept[1]
        data = {IMAGE: self._padded(case.image)}
        if with_labels:
            data[LABEL] = self._padded(case.label)
            if self.indexed:
                data[FOREGROUND], data[BACKGROUND] = map_binary_to_indices(data[LABEL], None, 0.0)
        self._prepared[id(case)] = (case, data)
        return data

    def _padded(self, volume: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.pad(volume.as_subclass(torch.Tensor))).as_subclass(torch.Tensor)

    def sample(self, case: ModelSpaceCase, with_labels: bool) -> dict[str, torch.Tensor]:
        # the crop pops the voxel lists from the dictionary it is given: hand it a shallow copy
        sample = self.crop(dict(self.prepared(case, with_labels)))
        return sample[0] if isinstance(sample, list) else sample


def labelled_sampler(patch_size, ratio: float) -> PatchSampler:
    """Foreground-oversampled patches of image and label (``ratio`` foreground centres to 1 background)."""
    crop = RandCropByPosNegLabeld(
        keys=(IMAGE, LABEL),
        label_key=LABEL,
        spatial_size=patch_size,
        pos=ratio,
        neg=1.0,
        num_samples=1,
        allow_smaller=True,
        fg_indices_key=FOREGROUND,
        bg_indices_key=BACKGROUND,
    )
    return PatchSampler(patch_size, Compose([crop]), indexed=True)


def unlabelled_sampler(patch_size) -> PatchSampler:
    crop = RandSpatialCropd(keys=IMAGE, roi_size=patch_size, random_size=False)
    return PatchSampler(patch_size, Compose([crop]), indexed=False)


def draw_batch(
    cases: list[ModelSpaceCase], sampler: PatchSampler, rng: np.random.Generator, size: int, with_labels: bool
) -> dict[str, torch.Tensor]:
    """``size`` patches of cases drawn with replacement, stacked: image (B, C, ...) and label (B, 1, ...)."""
    images, labels = [], []
    for index in rng.integers(0, len(cases), size):
        sample = sampler.sample(cases[index], with_labels)
        images.append(torch.as_tensor(sample[IMAGE]).as_subclass(torch.Tensor))
        if with_labels:
            labels.append(torch.as_tensor(sample[LABEL]).as_subclass(torch.Tensor))
    batch = {IMAGE: torch.stack(images)}
    if with_labels:
        batch[LABEL] = torch.stack(labels).long()
    return batch
