"""Sigmoid multi-label outputs (one channel a region, regions overlapping) as label probabilities."""

from __future__ import annotations

import math

import torch
from asfda.inference.activation import to_logits, to_probabilities
from asfda.inference.features import class_weights
from asfda.models.spec import ModelSpec
from asfda.scoring.entropy import normalized_entropy
from torch import nn

# BraTS: channels tumour core, whole tumour, enhancing tumour; label map 1 = core not enhancing, 2 = whole
# tumour only (oedema), 4 = enhancing (inside core, inside whole)
BRATS = ModelSpec(
    labels={0: "background", 1: "core", 2: "oedema", 4: "enhancing"},
    multi_label=True,
    regions={1: [0, 1], 2: [1], 4: [0, 1, 2]},
)


def logits(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, 1, 1, 1)


def test_nested_regions_give_the_bundles_labels():
    activation = BRATS.activation
    assert BRATS.output_channels == 3 and BRATS.num_classes == 5
    for on, label in (((9, 9, -9), 1), ((-9, 9, -9), 2), ((9, 9, 9), 4), ((-9, -9, -9), 0)):
        probabilities = to_probabilities(logits(*on), activation)
        assert torch.allclose(probabilities.sum(1), torch.ones(1))
        assert int(probabilities.argmax(1)) == label
        assert float(probabilities[0, 3]) == 0.0  # no region is label 3


def test_probability_is_that_of_the_channel_pattern():
    """Independent channels: P(core not enhancing) = p_core p_whole (1 - p_enh), renormalised over the
    listed patterns."""
    x = torch.tensor([0.3, 1.2, -0.4])
    p = torch.sigmoid(x)
    patterns = {
        0: (1 - p[0]) * (1 - p[1]) * (1 - p[2]),
        1: p[0] * p[1] * (1 - p[2]),
        2: (1 - p[0]) * p[1] * (1 - p[2]),
    }
    patterns[4] = p[0] * p[1] * p[2]
    total = sum(patterns.values())
    probabilities = to_probabilities(logits(*x.tolist()), BRATS.activation)[0, :, 0, 0, 0]
    for value, mass in patterns.items():
        assert math.isclose(float(probabilities[value]), float(mass / total), rel_tol=1e-5)


def test_threshold_is_the_bundles():
    """One region, threshold 0.8: the voxel is foreground exactly where sigmoid > 0.8."""
    spec = ModelSpec(labels={0: "background", 1: "lesion"}, multi_label=True, threshold=0.8)
    for probability in (0.75, 0.85):
        x = math.log(probability / (1 - probability))
        label = int(to_probabilities(logits(x), spec.activation).argmax(1))
        assert label == int(probability > 0.8)


def test_entropy_and_losses_are_defined():
    activation = BRATS.activation
    certain = to_probabilities(logits(12, 12, 12), activation)
    unsure = to_probabilities(logits(0, 0, 0), activation)
    assert normalized_entropy(certain[0]).item() < 0.01 < normalized_entropy(unsure[0]).item()
    output = logits(0.5, -0.2, 0.1).requires_grad_()
    loss = nn.functional.cross_entropy(to_logits(output, activation), torch.full((1, 1, 1, 1), 4))
    loss.backward()
    assert (output.grad[0, :, 0, 0, 0] < 0).all()  # an enhancing voxel raises all three channels


def test_class_weights_of_regions():
    layer = nn.Conv3d(2, 3, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).reshape(3, 2, 1, 1, 1))
    rows = class_weights(layer, BRATS.num_classes, BRATS.activation)
    assert rows.shape == (5, 2)
    assert torch.allclose(rows[1], 0.5 * torch.tensor([1.0 + 0.0 - 1.0, 0.0 + 1.0 - 1.0]))
    assert torch.allclose(rows[0], -0.5 * torch.tensor([2.0, 2.0]))
