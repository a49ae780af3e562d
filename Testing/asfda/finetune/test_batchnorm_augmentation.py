import torch
from asfda.finetune.augmentation import augment_batch, strong_augmentation, weak_augmentation
from asfda.finetune.batchnorm import recompute_batchnorm_statistics
from torch import nn


def test_batchnorm_statistics_are_recomputed_from_whole_volumes():
    network = nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2))
    network.eval()
    network[1].running_mean.fill_(100.0)  # stale statistics from somewhere else
    volume = torch.randn(1, 5, 6, 7) * 3 + 2
    used = recompute_batchnorm_statistics(network, [volume], multiple=4)
    assert used == 1
    with torch.no_grad():
        features = network[0](torch.nn.functional.pad(volume[None], (0, 1, 0, 2, 0, 3), mode="replicate"))
    expected = features.mean(dim=(0, 2, 3, 4))
    assert torch.allclose(network[1].running_mean, expected, atol=1e-4)
    assert network[1].momentum == 0.1 and not network.training  # settings restored


def test_augmentation_keeps_shape_and_changes_intensity_only():
    images = torch.rand(2, 1, 8, 8, 8)
    for transform in (weak_augmentation(0), strong_augmentation(1)):
        out = augment_batch(images, transform)
        assert out.shape == images.shape and torch.isfinite(out).all()
        assert type(out) is torch.Tensor  # not MetaTensor: it would slow every training step
    assert not torch.allclose(augment_batch(images, strong_augmentation(1)), images)


def test_frozen_batchnorm_keeps_its_statistics_while_the_weights_train():
    from asfda.finetune.batchnorm import freeze_batchnorm

    network = nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2))
    network.train()
    freeze_batchnorm(network)
    before = network[1].running_mean.clone()
    network(torch.randn(2, 1, 4, 4, 4) + 5).mean().backward()
    assert torch.equal(network[1].running_mean, before) and network[0].training
    assert network[1].weight.grad is not None
