import math

import pytest
import torch
from asfda.scoring.entropy import normalized_entropy


def test_uniform_prediction_has_entropy_one_and_certain_prediction_zero():
    uniform = torch.full((4, 2, 2, 2), 0.25)
    certain = torch.zeros(4, 2, 2, 2)
    certain[2] = 1.0
    assert torch.allclose(normalized_entropy(uniform), torch.ones(2, 2, 2))
    assert torch.equal(normalized_entropy(certain), torch.zeros(2, 2, 2))


def test_entropy_matches_hand_value():
    probabilities = torch.tensor([0.5, 0.5, 0.0]).reshape(3, 1, 1, 1)
    expected = math.log(2) / math.log(3)  # -(2 * 0.5 log 0.5) / log 3
    assert normalized_entropy(probabilities).item() == pytest.approx(expected, abs=1e-6)


def test_entropy_needs_two_classes():
    with pytest.raises(ValueError):
        normalized_entropy(torch.ones(1, 2, 2, 2))
