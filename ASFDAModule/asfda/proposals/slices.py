"""Volumetric refinement of a coarse 3-D proposal with a 2-D box-prompted model, slice by slice along one
axis, kept consistent across slices as in FATE-SAM: the most confident slice masks are accepted first and
the rest grow from them; a slice mask that disagrees with its accepted neighbours is rejected and the coarse
proposal is kept there. The consistency logic is pure numpy (``consistent_stack``, ``combine_structures``);
``refine_label_map`` drives a ``LiteMedSAM`` (or anything with its ``embed``/``segment``)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import CancelledError
from .sam import SliceBox, SliceEmbedding, SliceMask, window

ProgressCallback = Callable[[int, int], None]  # (slices done, slices in all)
CancelCheck = Callable[[], bool]


class BoxPromptedModel(Protocol):
    def embed(
        self, image: np.ndarray, intensity_window: tuple[float, float] | None = None
    ) -> SliceEmbedding: ...

    def segment(self, embedding: SliceEmbedding, boxes: Sequence[SliceBox]) -> list[SliceMask | None]: ...


@dataclass(frozen=True)
class RefinementConfig:
    axis: int = 0  # the slicing axis of the (z, y, x) array: 0 = axial for volumes read by SimpleITK
    box_margin: int = 1  # pixels added around the coarse proposal's box on each slice
    min_neighbour_dice: float = (
        0.5  # a slice mask below this mean Dice with its accepted neighbours is rejected
    )
    fill_label: int = 0  # the label of voxels that a refinement takes out of a structure and no other claims


@dataclass(frozen=True)
class StackRefinement:
    """One structure along the slicing axis: the chosen mask of each slice and where SAM's mask was kept."""

    masks: np.ndarray  # (slices, rows, cols) bool
    accepted: np.ndarray  # (slices,) bool: SAM's mask kept; False = coarse kept (or empty there)
    confidence: np.ndarray  # (slices, rows, cols) float32: SAM's confidence where accepted, else 0


@dataclass(frozen=True)
class RefinedLabelMap:
    labels: np.ndarray  # same shape and axes as the coarse label map
    confidence: (
        np.ndarray
    )  # float32 in [0, 1]: SAM's confidence in the voxel's label, 0 where the coarse stayed
    accepted_slices: dict[int, np.ndarray]  # per structure, (slices,) bool
    structure_masks: dict[int, np.ndarray]  # per structure, its consistent stack before the structures meet


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; two empty masks agree fully."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def consistent_stack(
    coarse: np.ndarray,
    candidates: Sequence[np.ndarray | None],
    slice_confidence: Sequence[float],
    min_neighbour_dice: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose, per slice, SAM's candidate or the coarse mask, growing outwards from the most confident slices.

    Slices whose coarse mask is empty stay empty. Each run of consecutive non-empty slices is grown best
    first: its most confident slice is checked against its own coarse mask, every later slice (the most
    confident on the front first) against the masks already chosen on its neighbours; a candidate whose mean
    Dice falls below ``min_neighbour_dice`` is rejected and the coarse mask kept, which then anchors the next.
    Returns the chosen masks (slices, rows, cols) and which slices took SAM's candidate.
    """
    count = len(coarse)
    present = np.array([coarse[i].any() for i in range(count)])
    chosen = np.zeros_like(coarse, dtype=bool)
    accepted = np.zeros(count, dtype=bool)
    decided = ~present
    while not decided.all():
        seed = max(np.flatnonzero(~decided), key=lambda i: slice_confidence[i])
        front = [(-slice_confidence[seed], seed)]
        while front:
            _, index = heapq.heappop(front)
            if decided[index]:
                continue
            candidate = candidates[index]
            neighbours = [j for j in (index - 1, index + 1) if 0 <= j < count and decided[j] and present[j]]
            references = [chosen[j] for j in neighbours] or [coarse[index]]
            agree = (
                candidate is not None
                and np.mean([dice(candidate, r) for r in references]) >= min_neighbour_dice
            )
            chosen[index] = candidate if agree else coarse[index]
            accepted[index] = agree
            decided[index] = True
            for j in (index - 1, index + 1):
                if 0 <= j < count and not decided[j]:
                    heapq.heappush(front, (-slice_confidence[j], j))
    return chosen, accepted


def combine_structures(
    coarse_labels: np.ndarray, refined: dict[int, tuple[np.ndarray, np.ndarray]], fill_label: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One label map from per-structure (mask, confidence) volumes. A refined structure keeps the voxels of
    its coarse proposal that its own mask keeps, whatever the others say (a box around a ribbon such as the
    cortex holds the structures inside it); voxels it lets go, and voxels of labels not refined, go to the
    most confident structure whose mask claims them, else ``fill_label`` (let go) or their old label."""
    labels = coarse_labels.copy()
    confidence = np.zeros(coarse_labels.shape, dtype=np.float32)
    claimable = ~np.isin(coarse_labels, list(refined))
    for label, (mask, structure_confidence) in refined.items():
        owned = coarse_labels == label
        kept = owned & mask
        labels[owned & ~mask] = fill_label
        claimable |= owned & ~mask
        confidence[kept] = structure_confidence[kept]
    best = np.full(coarse_labels.shape, -1.0, dtype=np.float32)
    for label, (mask, structure_confidence) in refined.items():
        claim = mask & claimable & (coarse_labels != label) & (structure_confidence > best)
        labels[claim] = label
        confidence[claim] = best[claim] = structure_confidence[claim]
    return labels, confidence


def slice_candidates(
    volume: np.ndarray,
    coarse_labels: np.ndarray,
    structures: Sequence[int],
    model: BoxPromptedModel,
    config: RefinementConfig,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> dict[int, list[SliceMask | None]]:
    """SAM's answer per structure and slice: one embedding per slice where any structure is present, one box
    per structure around its coarse mask there, the answer cut to that box. None where the coarse is empty."""
    images = np.moveaxis(volume, config.axis, 0)
    labels = np.moveaxis(coarse_labels, config.axis, 0)
    intensity_window = window(volume)  # one window for the volume, so that slices are seen alike
    answers: dict[int, list[SliceMask | None]] = {label: [None] * len(images) for label in structures}
    todo = [i for i in range(len(images)) if np.isin(labels[i], structures).any()]
    for done, index in enumerate(todo):
        if cancelled is not None and cancelled():
            raise CancelledError(f"refinement cancelled at slice {done} of {len(todo)}")
        boxes = {label: SliceBox.around(labels[index] == label, config.box_margin) for label in structures}
        present = {label: box for label, box in boxes.items() if box is not None}
        embedding = model.embed(images[index], intensity_window)
        for (label, box), answer in zip(present.items(), model.segment(embedding, list(present.values()))):
            if answer is not None:
                inside = box.mask(answer.probability.shape)
                answers[label][index] = SliceMask(
                    np.where(inside, answer.probability, 0.0), answer.predicted_iou
                )
        if progress is not None:
            progress(done + 1, len(todo))
    return answers


def refine_stack(
    coarse: np.ndarray, answers: Sequence[SliceMask | None], min_neighbour_dice: float
) -> StackRefinement:
    """``consistent_stack`` on SAM's answers for one structure, with SAM's per-voxel confidence: its predicted
    IoU times how sure it is of the voxel (max(p, 1 - p)) inside the slices it won, 0 elsewhere."""
    candidates = [None if a is None else a.mask for a in answers]
    slice_confidence = [0.0 if a is None else a.predicted_iou for a in answers]
    masks, accepted = consistent_stack(coarse, candidates, slice_confidence, min_neighbour_dice)
    confidence = np.zeros(coarse.shape, dtype=np.float32)
    for index in np.flatnonzero(accepted):
        probability = answers[index].probability
        confidence[index] = answers[index].predicted_iou * np.maximum(probability, 1.0 - probability)
    return StackRefinement(masks, accepted, confidence)


def refine_label_map(
    volume: np.ndarray,
    coarse_labels: np.ndarray,
    structures: Sequence[int],
    model: BoxPromptedModel,
    config: RefinementConfig = RefinementConfig(),
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> RefinedLabelMap:
    """Refine the given structures of a coarse label map (same shape as ``volume``) slice by slice."""
    if volume.shape != coarse_labels.shape:
        raise ValueError(f"volume {volume.shape} and coarse label map {coarse_labels.shape} differ in shape")
    answers = slice_candidates(volume, coarse_labels, structures, model, config, progress, cancelled)
    stacked = np.moveaxis(coarse_labels, config.axis, 0)
    refined, accepted = {}, {}
    for label in structures:
        stack = refine_stack(stacked == label, answers[label], config.min_neighbour_dice)
        refined[label] = (
            np.moveaxis(stack.masks, 0, config.axis),
            np.moveaxis(stack.confidence, 0, config.axis),
        )
        accepted[label] = stack.accepted
    labels, confidence = combine_structures(coarse_labels, refined, config.fill_label)
    return RefinedLabelMap(
        labels, confidence, accepted, {label: mask for label, (mask, _) in refined.items()}
    )
