import torch
from asfda.config import ThresholdRule
from asfda.scoring.region import adaptive_foreground, dilate, entropy_threshold, otsu_threshold


def test_otsu_separates_two_clusters():
    values = torch.cat([torch.full((900,), 0.1), torch.full((100,), 0.7)])
    threshold = otsu_threshold(values, bins=100)
    assert 0.1 < threshold <= 0.7
    assert ((values > threshold) == (values == 0.7)).all()


def test_first_valley_rule_also_separates_clusters():
    generator = torch.Generator().manual_seed(0)
    values = torch.cat(
        [
            0.1 + 0.02 * torch.randn(900, generator=generator),
            0.7 + 0.02 * torch.randn(100, generator=generator),
        ]
    ).clamp(0, 1)
    threshold = entropy_threshold(values, ThresholdRule.FIRST_PEAK, bins=100)
    assert values[:900].max() < threshold < values[900:].min()


def test_dilation_grows_a_voxel_into_a_cube():
    mask = torch.zeros(7, 7, 7, dtype=torch.bool)
    mask[3, 3, 3] = True
    assert dilate(mask, 1).sum() == 27
    assert dilate(mask, 2).sum() == 125
    assert torch.equal(dilate(mask, 0), mask)


def test_adaptive_foreground_is_dilated_prediction_plus_uncertain_voxels():
    labels = torch.zeros(9, 9, 9, dtype=torch.long)
    labels[4, 4, 4] = 2
    entropy = torch.zeros(9, 9, 9)
    entropy[0, 0, 0] = 0.9  # far from any anatomy, but uncertain
    entropy[8, 8, 8] = 0.2  # far and certain enough: never counts
    region = adaptive_foreground(labels, entropy, dilation=1, threshold=0.5)
    assert region[3:6, 3:6, 3:6].all()
    assert region[0, 0, 0]
    assert not region[8, 8, 8]
    assert region.sum() == 27 + 1
