"""Slice-by-slice refinement kept consistent across slices: the pure logic on hand-made stacks (a rogue slice
is rejected, consistent ones kept, empty slices dropped, the most confident slice anchors the rest), the
driver with a stand-in for SAM, and once the real LiteMedSAM on a 3 mm ICBM152 T2 (.ci/setup installs it)."""

from __future__ import annotations

import numpy as np
import pytest
from asfda.errors import CancelledError
from asfda.proposals.sam import SliceEmbedding, SliceMask
from asfda.proposals.slices import (
    RefinementConfig,
    combine_structures,
    consistent_stack,
    dice,
    refine_label_map,
)


def square(size: int, low: int, high: int, shape=(12, 12)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[low : low + size, high : high + size] = True
    return mask


@pytest.mark.parametrize("rogue_confidence", [0.5, 0.95])
def test_a_rogue_slice_is_rejected_and_the_coarse_kept_there_while_consistent_slices_are_kept(
    rogue_confidence,
):
    coarse = np.stack([square(6, 3, 3)] * 5)
    good = square(5, 3, 4)  # SAM's tighter mask: Dice 0.82 with the coarse square, 1.0 between slices
    rogue = square(4, 0, 0) | square(2, 9, 9)  # somewhere else: Dice 0 with good, 0.04 with the coarse
    candidates = [good, good, rogue, good, good]
    masks, accepted = consistent_stack(coarse, candidates, [0.9, 0.8, rogue_confidence, 0.8, 0.7])
    # Less confident, the rogue slice is judged against its accepted neighbours; most confident, it is the
    # seed and judged against its own coarse mask, which then anchors its neighbours. Refused either way.
    assert accepted.tolist() == [True, True, False, True, True]
    assert all((masks[i] == good).all() for i in (0, 1, 3, 4))
    assert (masks[2] == coarse[2]).all()


def test_empty_coarse_slices_are_dropped_even_where_sam_found_something():
    coarse = np.stack([square(6, 3, 3), np.zeros((12, 12), bool), square(6, 3, 3)])
    candidates = [square(6, 3, 3), square(6, 3, 3), square(6, 3, 3)]
    masks, accepted = consistent_stack(coarse, candidates, [0.5, 0.99, 0.5])
    assert accepted.tolist() == [True, False, True] and not masks[1].any()


def test_a_run_grows_from_its_most_confident_slice():
    # Two interpretations along the stack: SAM sees a shifted square on slices 0-1, the coarse square on 2-4.
    coarse = np.stack([square(6, 3, 3)] * 5)
    shifted = square(6, 0, 6)  # Dice 0.25 with the coarse square
    candidates = [shifted, shifted, coarse[2], coarse[3], coarse[4]]
    _, accepted = consistent_stack(coarse, candidates, [0.2, 0.3, 0.9, 0.8, 0.8])
    assert accepted.tolist() == [False, False, True, True, True]
    # A threshold of 0 accepts every candidate: the check is what rejects.
    _, accepted = consistent_stack(coarse, candidates, [0.2, 0.3, 0.9, 0.8, 0.8], min_neighbour_dice=0.0)
    assert accepted.all()


def test_each_run_of_slices_gets_its_own_seed():
    empty = np.zeros((12, 12), bool)
    coarse = np.stack([square(4, 2, 2), square(4, 2, 2), empty, square(4, 6, 6), square(4, 6, 6)])
    candidates = [square(4, 2, 2), square(4, 2, 2), None, square(4, 6, 6), square(3, 6, 6)]
    masks, accepted = consistent_stack(coarse, candidates, [0.9, 0.9, 0.0, 0.6, 0.9])
    assert accepted.tolist() == [True, True, False, True, True]
    assert dice(masks[4], square(3, 6, 6)) == 1.0


def test_combining_structures_keeps_what_an_owner_keeps_and_gives_the_rest_to_the_most_confident():
    coarse = np.zeros((1, 6, 6), dtype=np.uint8)
    coarse[0, :, :2], coarse[0, :, 2], coarse[0, :, 3:] = 2, 1, 3  # label 1 is not refined
    mask_2 = np.zeros_like(coarse, dtype=bool)
    mask_2[0, 1:5, :4] = True  # lets rows 0 and 5 go, claims columns 2 and 3
    mask_3 = coarse >= 1
    mask_3[0, :, :2] = False
    mask_3[0, 1:3, 3] = False  # lets two of its voxels go, claims column 2
    confidence_2 = np.full(coarse.shape, 0.8, np.float32)
    confidence_3 = np.full(coarse.shape, 0.6, np.float32)
    labels, confidence = combine_structures(coarse, {2: (mask_2, confidence_2), 3: (mask_3, confidence_3)}, 0)
    assert (labels[0, [0, 5], :2] == 0).all()  # let go by 2, claimed by no one
    assert (labels[0, 1:5, 2] == 2).all() and (labels[0, [0, 5], 2] == 3).all()  # 0.8 beats 0.6
    assert (labels[0, 1:3, 3] == 2).all()  # let go by 3, claimed by 2
    assert (labels[0, 3:5, 3] == 3).all()  # kept by its owner although 2 is more confident
    assert confidence[0, 1, 2] == pytest.approx(0.8) and confidence[0, 4, 3] == pytest.approx(0.6)
    assert confidence[0, 0, 0] == 0.0


class ShiftingModel:
    """A stand-in for SAM: answers each box with the box shrunk by one pixel, except on one rogue slice, where
    it answers a mask in the corner; counts embeddings to show one per slice."""

    def __init__(self, rogue_slice: int):
        self.rogue_slice, self.embedded = rogue_slice, []

    def embed(self, image, intensity_window=None):
        self.embedded.append(int(image[0, 0]))  # the test writes the slice index there
        return SliceEmbedding(None, image.shape, image.shape)

    def segment(self, embedding, boxes):
        index = self.embedded[-1]
        answers = []
        for box in boxes:
            mask = np.zeros(embedding.slice_shape, dtype=np.float32)
            if index == self.rogue_slice:
                mask[:2, :2] = 1.0
            else:
                mask[box.row_min + 2 : box.row_max - 1, box.col_min + 2 : box.col_max - 1] = 1.0
            answers.append(SliceMask(mask, 0.9))
        return answers


def test_refine_label_map_runs_one_embedding_per_slice_and_rejects_the_rogue_slice():
    volume = np.zeros((5, 12, 12), dtype=np.float32)
    volume[:, 0, 0] = np.arange(5)
    coarse = np.zeros((5, 12, 12), dtype=np.uint8)
    coarse[1:5, 3:9, 3:9] = 2
    coarse[1:5, 10:12, 10:12] = 3
    model = ShiftingModel(rogue_slice=3)
    seen = []
    refined = refine_label_map(
        volume,
        coarse,
        [2, 3],
        model,
        RefinementConfig(box_margin=1),
        progress=lambda d, n: seen.append((d, n)),
    )
    assert model.embedded == [1, 2, 3, 4] and seen[-1] == (4, 4)  # slice 0 has no structure: not embedded
    assert refined.accepted_slices[2].tolist() == [False, True, True, False, True]
    assert (refined.labels[3] == coarse[3]).all()  # the rogue slice keeps the coarse proposal
    assert (refined.labels[2, 4:8, 4:8] == 2).all() and (refined.labels[2, 3, 3:9] == 0).all()
    assert (refined.confidence[3] == 0).all() and refined.confidence[2, 5, 5] == pytest.approx(0.9)
    with pytest.raises(CancelledError, match="slice 0 of 4"):
        refine_label_map(volume, coarse, [2], ShiftingModel(3), cancelled=lambda: True)


def test_real_lite_medsam_refines_three_slices_of_the_cerebellum(lite_medsam, icbm152_t2_at_3mm):
    """From the atlas's cerebellum grown by a voxel in-plane (Dice 0.91 with it), SAM's stack measured 0.82:
    at 3 mm a one-voxel dilation is a proposal SAM does not beat (see the README)."""
    from scipy import ndimage

    volume, labels = icbm152_t2_at_3mm
    middle = int(np.argmax((labels == 5).sum(axis=(1, 2))))
    reference = labels[middle - 1 : middle + 2] == 5
    coarse = np.stack([ndimage.binary_dilation(s) for s in reference]).astype(np.uint8) * 5
    refined = refine_label_map(volume[middle - 1 : middle + 2], coarse, [5], lite_medsam)
    assert refined.accepted_slices[5].all()
    assert dice(refined.labels == 5, reference) > 0.78
    assert refined.confidence[refined.labels == 5].mean() > 0.5
