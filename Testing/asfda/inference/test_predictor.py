import pytest
import torch
from asfda.inference.features import batchnorm_layers, class_weights, final_layer
from asfda.inference.predictor import predict, whole_volume_window, window_weights
from asfda.models.loading import LoadedModel, ModelKind
from asfda.models.spec import ModelSpec
from asfda.scoring.dkd import prototypes
from monai.networks.nets import SegResNet, UNet
from torch import nn


def model_of(network: nn.Module, num_classes: int = 4, roi=(16, 16, 16), overlap=0.5) -> LoadedModel:
    spec = ModelSpec(labels={c: str(c) for c in range(num_classes)}, roi_size=roi, overlap=overlap)
    return LoadedModel(network.eval(), spec, ModelKind.NETWORK, None)


def pointwise_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 6, 1), nn.ReLU(), nn.Conv3d(6, 4, 1))


def test_window_weights_count_each_voxel_once():
    region = (slice(0, 20), slice(0, 20), slice(0, 20))
    weights, windows = window_weights((20, 20, 20), (16, 16, 16), 0.5, region)
    assert windows == 8
    assert weights[0, 0, 0] == 1.0 and weights[10, 10, 10] == 1 / 8
    # the windows start at 0 and 4 on each axis; summed over them, the weights count every voxel once
    corners = [(x, y, z) for x in (0, 4) for y in (0, 4) for z in (0, 4)]
    total = sum(weights[tuple(slice(a, a + 16) for a in corner)].sum() for corner in corners)
    assert float(total) == pytest.approx(20**3)


@pytest.mark.parametrize("whole_volume", [False, True])
def test_sliding_window_prototypes_equal_whole_volume_prototypes(whole_volume):
    network = pointwise_network()
    image = torch.randn(1, 23, 19, 30)  # not a multiple of the window, one side padded
    prediction = predict(model_of(network), image, whole_volume=whole_volume)
    with torch.no_grad():
        features = torch.relu(network[0](image[None]))[0]
        probabilities = torch.softmax(network[2](features[None]), 1)[0]
    expected, mass = prototypes(probabilities, features)
    assert prediction.probabilities.shape == (4, 23, 19, 30)
    assert torch.allclose(prediction.probabilities, probabilities, atol=1e-5)
    assert torch.allclose(prediction.prototypes, expected, atol=1e-5)
    assert torch.allclose(prediction.class_mass, mass, rtol=1e-4)


def test_final_layer_and_class_weights_of_monai_networks():
    segresnet = SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=4, norm="batch")
    layer = final_layer(segresnet, 3)
    assert layer.kernel_size == (1, 1, 1) and layer.out_channels == 3
    assert class_weights(layer, 3).shape == (3, layer.in_channels)
    assert len(batchnorm_layers(segresnet)) > 0
    unet = UNet(3, 1, 3, (4, 8), (2,), num_res_units=0)  # final layer: a transposed convolution
    layer = final_layer(unet, 3)
    assert isinstance(layer, nn.ConvTranspose3d)
    assert class_weights(layer, 3).shape == (3, layer.in_channels)


def test_batchnorm_statistics_are_collected_on_request():
    segresnet = SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=4, norm="batch")
    model = model_of(segresnet, 3)
    prediction = predict(model, torch.randn(1, 20, 20, 20), batchnorm_stats=True)
    assert len(prediction.batchnorm_stats) == len(batchnorm_layers(segresnet))
    mean, variance, running_mean, running_var = prediction.batchnorm_stats[0]
    assert mean.shape == variance.shape == running_mean.shape and (variance >= 0).all()
    assert predict(model, torch.randn(1, 20, 20, 20)).batchnorm_stats == []
    assert not any(hasattr(m, "_forward_hooks") and m._forward_hooks for m in segresnet.modules())


def test_mc_dropout_passes_differ_and_deterministic_passes_do_not():
    model = model_of(pointwise_network())
    image = torch.randn(1, 16, 16, 16)
    assert torch.equal(predict(model, image).probabilities, predict(model, image).probabilities)
    first = predict(model, image, mc_dropout_rate=0.3).probabilities
    second = predict(model, image, mc_dropout_rate=0.3).probabilities
    assert not torch.equal(first, second)


def test_cancel_stops_prediction():
    from asfda.errors import CancelledError

    with pytest.raises(CancelledError):
        predict(model_of(pointwise_network()), torch.randn(1, 40, 40, 40), cancelled=lambda: True)


def test_progress_reports_every_batch_of_windows():
    seen = []
    model, image = model_of(pointwise_network()), torch.randn(1, 20, 20, 20)
    predict(model, image, progress=lambda d, n: seen.append((d, n)), sw_batch_size=1)
    assert seen[-1] == (8, 8) and len(seen) == 8
    seen.clear()
    predict(model, image, progress=lambda d, n: seen.append((d, n)), sw_batch_size=3)
    assert seen == [(3, 8), (6, 8), (8, 8)]


def test_whole_volume_window_within_the_budget_only():
    model = model_of(pointwise_network(), roi=(48, 48, 48))
    cpu = torch.device("cpu")
    assert whole_volume_window((59, 72, 59), model, cpu) == (64, 80, 64)  # multiples of 16, 48's power of two
    assert whole_volume_window((40, 30, 48), model, cpu) is None  # one window already
    assert whole_volume_window((200, 200, 200), model, cpu) is None  # over the CPU's voxel budget


class SizeBoundNetwork(nn.Module):
    """A network that takes only its window's size (like a ViT with fixed position embeddings)."""

    def __init__(self, roi):
        super().__init__()
        self.roi = tuple(roi)
        self.head = nn.Conv3d(1, 4, 1)

    def forward(self, x):
        if tuple(x.shape[2:]) != self.roi:
            raise RuntimeError(f"input size {tuple(x.shape[2:])} is not {self.roi}")
        return self.head(x)


def test_whole_volume_falls_back_to_windows_when_the_network_refuses_it():
    torch.manual_seed(0)
    model = model_of(SizeBoundNetwork((16, 16, 16)))
    image = torch.randn(1, 23, 19, 30)
    windows = predict(model, image, whole_volume=False)
    whole = predict(model, image, whole_volume=True)
    assert torch.allclose(whole.probabilities, windows.probabilities, atol=1e-6)
    assert whole_volume_window((23, 19, 30), model, torch.device("cpu")) is None  # windows from then on
