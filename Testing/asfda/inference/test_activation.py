"""The model's output activation: probabilities are made exactly once, whatever the network ends with."""

import pytest
import torch
from asfda.inference.activation import OutputActivation, to_logits, to_probabilities
from asfda.inference.predictor import predict
from asfda.models.loading import LoadedModel, ModelKind, build_network
from asfda.models.spec import ModelSpec, NetworkSpec
from torch import nn

UNET = NetworkSpec(
    "UNet",
    {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    },
)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_activation_gives_the_same_probabilities(channels):
    logits = torch.randn(2, channels, 4, 4, 4) * 3
    reference = to_probabilities(logits, OutputActivation.LOGITS)
    assert reference.shape[1] == max(channels, 2)
    assert torch.allclose(reference.sum(1), torch.ones(()))
    ended = torch.sigmoid(logits) if channels == 1 else torch.softmax(logits, 1)
    logged = torch.nn.functional.logsigmoid(logits) if channels == 1 else torch.log_softmax(logits, 1)
    assert torch.allclose(to_probabilities(ended, "probabilities"), reference, atol=1e-6)
    assert torch.allclose(to_probabilities(logged, "log_probabilities"), reference, atol=1e-6)
    for output, activation in ((logits, "logits"), (ended, "probabilities"), (logged, "log_probabilities")):
        assert torch.allclose(torch.softmax(to_logits(output, activation), 1), reference, atol=1e-4)


class Sharpen(nn.Module):
    """Makes the random network confident, as a trained one is."""

    def forward(self, x):
        return 20 * x


def model_with_head(head: nn.Module | None, activation: str) -> LoadedModel:
    torch.manual_seed(0)
    network = nn.Sequential(build_network(UNET), Sharpen(), *([head] if head is not None else []))
    spec = ModelSpec(labels={0: "bg", 1: "a", 2: "b"}, roi_size=(16, 16, 16), output_activation=activation)
    return LoadedModel(network.eval(), spec, ModelKind.NETWORK, None)


def test_a_network_ending_in_softmax_is_not_softmaxed_twice():
    image = torch.randn(1, 20, 18, 16)
    plain = predict(model_with_head(None, "logits"), image)
    ended = predict(model_with_head(nn.Softmax(dim=1), "probabilities"), image)
    logged = predict(model_with_head(nn.LogSoftmax(dim=1), "log_probabilities"), image)
    assert torch.allclose(ended.probabilities, plain.probabilities, atol=1e-5)
    assert torch.allclose(logged.probabilities, plain.probabilities, atol=1e-5)
    # What the engine did before: softmax over probabilities flattens them and raises the entropy.
    twice = predict(model_with_head(nn.Softmax(dim=1), "logits"), image)
    assert plain.entropy.mean() < 0.5 and twice.entropy.mean() > plain.entropy.mean() + 0.2
