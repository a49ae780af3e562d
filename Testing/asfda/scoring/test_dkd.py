import math

import pytest
import torch
from asfda.scoring.dkd import (
    PrototypeAccumulator,
    batchnorm_divergence,
    cosine_gap,
    embedding,
    gaussian_kl,
    prototypes,
)


def test_prototype_is_probability_weighted_mean_feature():
    probabilities = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]]).reshape(2, 3, 1, 1)
    features = torch.tensor([[2.0, 4.0, 6.0]]).reshape(1, 3, 1, 1)
    mu, mass = prototypes(probabilities, features)
    # class 0: (1*2 + 0.5*4) / 1.5 ; class 1: (0.5*4 + 1*6) / 1.5
    assert mu[:, 0].tolist() == pytest.approx([4 / 1.5, 8 / 1.5])
    assert mass.tolist() == pytest.approx([1.5, 1.5])


def test_prototypes_accumulated_by_overlapping_windows_equal_prototypes_at_once():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(torch.randn(3, 10, 8, 6, generator=generator), 0)
    features = torch.randn(5, 10, 8, 6, generator=generator)
    expected, expected_mass = prototypes(probabilities, features)
    windows = [(slice(0, 6), slice(0, 8), slice(0, 6)), (slice(4, 10), slice(0, 8), slice(0, 6))]
    coverage = torch.zeros(10, 8, 6)
    for window in windows:
        coverage[window] += 1
    accumulator = PrototypeAccumulator(3, 5)
    for window in reversed(windows):  # order must not matter
        accumulator.add(
            probabilities[(slice(None), *window)], features[(slice(None), *window)], (1 / coverage)[window]
        )
    assert torch.allclose(accumulator.prototypes(), expected, atol=1e-6)
    assert torch.allclose(accumulator.mass.float(), expected_mass, atol=1e-5)


def test_features_at_lower_resolution_get_pooled_probabilities():
    probabilities = torch.zeros(2, 4, 4, 4)
    probabilities[0, :2] = 1.0
    probabilities[1, 2:] = 1.0
    features = torch.tensor([1.0, 3.0]).reshape(1, 2, 1, 1).expand(1, 2, 2, 2).contiguous()
    mu, _ = prototypes(probabilities, features)
    assert mu[:, 0].tolist() == pytest.approx([1.0, 3.0])


def test_cosine_gap_hand_values():
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [5.0, 5.0]])  # same, orthogonal, same direction
    present = torch.tensor([True, True, True])
    assert cosine_gap(target, weights, present) == pytest.approx((0 + 1 + 0) / 3)
    assert cosine_gap(target, weights, torch.tensor([True, False, True])) == pytest.approx(0.0, abs=1e-6)
    assert cosine_gap(target, weights, torch.tensor([False, False, False])) == 1.0


def test_gaussian_kl_hand_values():
    zero = gaussian_kl(
        torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([2.0]), eps=0
    )
    assert zero.item() == pytest.approx(0.0)
    # KL(N(1, 1) || N(0, 4)) = 0.5 * (log 4 + (1 + 1) / 4 - 1)
    value = gaussian_kl(
        torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([4.0]), eps=0
    )
    assert value.item() == pytest.approx(0.5 * (math.log(4) + 0.5 - 1))


def test_batchnorm_divergence_averages_layers_and_channels():
    same = (torch.zeros(2), torch.ones(2), torch.zeros(2), torch.ones(2))
    shifted = (torch.ones(1), torch.ones(1), torch.zeros(1), torch.ones(1))  # KL = 0.5
    assert batchnorm_divergence([]) == 0.0
    assert batchnorm_divergence([same, shifted]) == pytest.approx(0.5 / 3, rel=1e-4)


def test_embedding_is_unit_length_concatenation():
    e = embedding(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    assert e.tolist() == pytest.approx([0.6, 0.0, 0.0, 0.8])
