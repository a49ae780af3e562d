"""TorchScript networks give the knowledge gap the same features as their nn.Module twins: the final layer's
input, reached through the scripted graph (no Python hooks there), and the same class weights W_c."""

import pytest
import torch
from asfda.inference.features import ScriptedFeatures, class_weights, final_layer, is_scripted
from asfda.inference.predictor import predict
from asfda.models.loading import LoadedModel, ModelKind
from asfda.models.spec import ModelSpec
from asfda.scoring.case_scores import knowledge_gap
from monai.networks.nets import SegResNet, UNet
from torch import nn


def loaded(network: nn.Module, kind: ModelKind) -> LoadedModel:
    spec = ModelSpec(labels={c: str(c) for c in range(3)}, roi_size=(16, 16, 16), overlap=0.25)
    return LoadedModel(network.eval(), spec, kind, None)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SegResNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=3,
            init_filters=2,
            blocks_down=(1, 1),
            blocks_up=(1,),
            norm="instance",
        ),
        lambda: UNet(3, 1, 3, (4, 8), (2,), num_res_units=0),  # ends in a transposed convolution
    ],
    ids=["segresnet", "unet-transposed"],
)
def test_scripted_network_has_the_same_features_weights_and_gap_as_its_module(make):
    torch.manual_seed(0)
    network = make().eval()
    image = torch.randn(1, 18, 16, 19)
    scripted = torch.jit.trace(network, torch.randn(1, 1, 16, 16, 16), check_trace=False)
    layer = final_layer(scripted, 3)
    assert is_scripted(layer)
    assert torch.equal(class_weights(layer, 3), class_weights(final_layer(network, 3), 3))
    eager, traced = (
        predict(loaded(network, ModelKind.NETWORK), image),
        predict(loaded(scripted, ModelKind.TORCHSCRIPT), image),
    )
    assert traced.prototypes.shape == eager.prototypes.shape == (3, class_weights(layer, 3).shape[1])
    assert torch.allclose(traced.probabilities, eager.probabilities, atol=1e-5)
    assert torch.allclose(traced.prototypes, eager.prototypes, atol=1e-5)
    weights = class_weights(layer, 3)
    assert knowledge_gap(traced, weights).cosine == pytest.approx(
        knowledge_gap(eager, weights).cosine, abs=1e-5
    )
    # the network's own forward is untouched: it still returns one tensor
    assert isinstance(scripted(torch.randn(1, 1, 16, 16, 16)), torch.Tensor)


def test_the_feature_copy_follows_the_networks_weights():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv3d(1, 5, 3, padding=1), nn.ReLU(), nn.Conv3d(5, 2, 1))
    scripted = torch.jit.script(network)
    features = ScriptedFeatures(scripted, 2)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        output, g = features(x)
        assert torch.equal(output, scripted(x)) and g.shape == (1, 5, 8, 8, 8)
        scripted[0].weight.mul_(2.0)  # fine-tuning changes the scripted network's parameters in place
        assert torch.allclose(features(x)[1], torch.relu(scripted[0](x)))


def test_a_scripted_network_without_a_class_convolution_keeps_logit_features():
    class Linear(nn.Module):
        def forward(self, x):
            return torch.cat([x, -x, 0 * x], 1)

    scripted = torch.jit.script(Linear())
    assert final_layer(scripted, 3) is None
    with pytest.raises(ValueError, match="no final convolution"):
        ScriptedFeatures(scripted, 3)
    prediction = predict(loaded(scripted, ModelKind.TORCHSCRIPT), torch.randn(1, 16, 16, 16))
    assert prediction.prototypes.shape == (3, 3)  # the logits, as before


def test_the_frozen_baseline_path_scores_a_scripted_network_like_the_scoring_path():
    from asfda.inference.baseline import baseline_predict

    torch.manual_seed(0)
    network = UNet(3, 1, 3, (4, 8), (2,), num_res_units=0).eval()
    model = loaded(
        torch.jit.trace(network, torch.randn(1, 1, 16, 16, 16), check_trace=False), ModelKind.TORCHSCRIPT
    )
    image = torch.randn(1, 18, 16, 19)
    old, new = baseline_predict(model, image), predict(model, image)
    assert torch.allclose(old.prototypes, new.prototypes, atol=1e-5)
