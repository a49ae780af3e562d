import pytest
import torch
from asfda.config import AsdConfig
from asfda.scoring.asd import anatomical_segmentation_difficulty, nearest_class
from asfda.scoring.entropy import normalized_entropy


def one_hot_probabilities(labels: torch.Tensor, num_classes: int, confidence: float = 1.0) -> torch.Tensor:
    probabilities = torch.full((num_classes, *labels.shape), (1 - confidence) / (num_classes - 1))
    probabilities.scatter_(0, labels[None], confidence)
    return probabilities


def test_nearest_class_assigns_each_voxel_to_the_closest_structure():
    labels = torch.zeros(1, 1, 10, dtype=torch.long)
    labels[0, 0, 1] = 1
    labels[0, 0, 8] = 2
    owner = nearest_class(labels)[0, 0]
    assert owner.tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]


def test_asd_is_class_balanced_mean_entropy_over_the_region():
    # A large structure (class 1) predicted confidently, a small one (class 2) with uncertainty.
    labels = torch.zeros(12, 12, 12, dtype=torch.long)
    labels[1:6, 1:6, 1:6] = 1
    labels[9, 9, 9] = 2
    probabilities = one_hot_probabilities(labels, 3, confidence=0.98)
    probabilities[:, 9, 9, 9] = torch.tensor([0.3, 0.3, 0.4])
    entropy = normalized_entropy(probabilities)
    result = anatomical_segmentation_difficulty(probabilities, entropy, AsdConfig(dilation_voxels=1))
    assert not result.no_foreground_found
    # by hand: class 1's share of F has the entropy of p = 0.98 everywhere; class 2's is its dilated cube
    low = float(normalized_entropy(torch.tensor([0.98, 0.01, 0.01]).reshape(3, 1)))
    cube = entropy[8:11, 8:11, 8:11]
    assert result.per_class[1] == pytest.approx(low, abs=1e-5)
    assert result.per_class[2] == pytest.approx(float(cube.mean()), abs=1e-5)
    assert result.score == pytest.approx((result.per_class[1] + result.per_class[2]) / 2, abs=1e-6)
    # class balance: the single uncertain voxel weighs as much as the 125-voxel structure
    assert result.score > float(entropy[(labels > 0) | (entropy > 0.5)].mean())


def test_no_foreground_falls_back_to_top_entropy_and_flags_it():
    probabilities = torch.zeros(3, 10, 10, 10)
    probabilities[0] = 1.0  # background everywhere, fully certain
    probabilities[:, 0, 0, :] = torch.tensor([0.6, 0.2, 0.2])[:, None]  # ten mildly uncertain voxels
    entropy = normalized_entropy(probabilities)
    result = anatomical_segmentation_difficulty(probabilities, entropy, AsdConfig(fallback_top_fraction=0.01))
    # Otsu puts the ten uncertain voxels above the threshold: a region without any predicted structure
    assert result.foreground_voxels == 10
    assert result.score == pytest.approx(float(entropy[0, 0, 0]), abs=1e-6)


def test_empty_region_is_flagged_no_foreground_found():
    probabilities = torch.zeros(2, 4, 4, 4)
    probabilities[0] = 1.0
    entropy = normalized_entropy(probabilities)
    result = anatomical_segmentation_difficulty(probabilities, entropy)
    assert result.no_foreground_found
    assert result.score == 0.0
