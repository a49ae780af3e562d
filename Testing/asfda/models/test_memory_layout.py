"""Channels-last on the CPU, for training and prediction: the same round and the same prediction as in the
default layout, up to float sums, and the network handed back in the layout it had (saved weights as
before; a round's student stays channels-last while its averaged weights are validated)."""

from dataclasses import replace

import torch
from asfda.config import FinetuneConfig
from asfda.finetune import trainer
from asfda.inference.predictor import predict
from asfda.io.preprocessing import ModelSpaceCase
from asfda.models.loading import build_network, load_model
from asfda.models.memory_layout import current_layout, network_layout, running_in_layout
from asfda.models.spec import ModelSpec, NetworkSpec
from monai.data import MetaTensor

SMALL = replace(
    FinetuneConfig(), steps=3, steps_per_labelled=0, patch_size=(16, 16, 16), batch_size=2, amp=False
)


def case(seed: int) -> ModelSpaceCase:
    image = torch.rand(1, 32, 32, 32, generator=torch.Generator().manual_seed(seed))
    return ModelSpaceCase(MetaTensor(image), MetaTensor((image > 0.6).long()), transform=None)


def test_channels_last_is_the_cpu_layout_of_volumetric_networks_only():
    assert network_layout(torch.device("cpu"), 3) is torch.channels_last_3d
    assert network_layout(torch.device("cpu"), 2) is torch.contiguous_format
    assert network_layout(torch.device("cuda"), 3) is torch.contiguous_format


def test_a_round_in_channels_last_matches_the_default_layout_and_ends_in_it(one_class_model, monkeypatch):
    fast = load_model(one_class_model)
    fast_result = trainer.finetune_round(fast, [case(0), case(1)], [], SMALL)
    monkeypatch.setattr(trainer, "network_layout", lambda device, dims: torch.contiguous_format)
    plain = load_model(one_class_model)
    plain_result = trainer.finetune_round(plain, [case(0), case(1)], [], SMALL)

    for name, value in fast_result.state_dict.items():
        assert value.is_contiguous(), name
        torch.testing.assert_close(value, plain_result.state_dict[name], rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in fast.network.parameters())
    changed = [n for n, v in fast_result.state_dict.items() if v.is_floating_point()]
    start = load_model(one_class_model).network.state_dict()
    assert any(not torch.equal(fast_result.state_dict[n], start[n]) for n in changed)  # it did train


def test_a_prediction_in_channels_last_matches_the_default_layout(one_class_model, monkeypatch):
    model, image = load_model(one_class_model), case(3).image.as_tensor()
    seen = []
    model.network.register_forward_pre_hook(lambda network, inputs: seen.append(current_layout(network)))
    fast = predict(model, image, batchnorm_stats=True)
    assert seen and set(seen) == {torch.channels_last_3d}
    assert current_layout(model.network) is torch.contiguous_format  # handed back as it came
    from asfda.inference import predictor

    monkeypatch.setattr(predictor, "network_layout", lambda device, dims: torch.contiguous_format)
    plain = predict(model, image, batchnorm_stats=True)
    torch.testing.assert_close(fast.probabilities, plain.probabilities, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.prototypes, plain.prototypes, rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(fast.batchnorm_stats, plain.batchnorm_stats):
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_layout_a_network_had_is_the_layout_it_gets_back(one_class_model):
    network = load_model(one_class_model).network
    with running_in_layout(network, torch.channels_last_3d):
        assert current_layout(network) is torch.channels_last_3d
        with running_in_layout(network, torch.channels_last_3d):  # a prediction inside a round
            pass
        assert current_layout(network) is torch.channels_last_3d
    assert current_layout(network) is torch.contiguous_format


def test_a_torchscript_network_predicts_in_channels_last_too(tmp_path, monkeypatch):
    unet = NetworkSpec(
        "UNet",
        {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]},
    )
    folder = tmp_path / "ts"
    folder.mkdir()
    ModelSpec(labels={0: "background", 1: "a"}, roi_size=(16, 16, 16)).save(folder)
    torch.jit.script(build_network(unet).eval()).save(str(folder / "model.ts"))
    model, image = load_model(folder / "model.ts"), case(4).image.as_tensor()
    fast = predict(model, image)
    assert current_layout(model.network) is torch.contiguous_format
    from asfda.inference import predictor

    monkeypatch.setattr(predictor, "network_layout", lambda device, dims: torch.contiguous_format)
    plain = predict(model, image)
    torch.testing.assert_close(fast.probabilities, plain.probabilities, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.prototypes, plain.prototypes, rtol=1e-4, atol=1e-5)


def test_a_network_with_other_four_dimensional_weights_takes_the_layout_too():
    network = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3))
    network.register_parameter("position", torch.nn.Parameter(torch.zeros(1, 3, 4, 5)))  # a 4-D embedding
    with running_in_layout(network, torch.channels_last_3d):
        assert current_layout(network) is torch.channels_last_3d
        assert network.position.is_contiguous()
    assert current_layout(network) is torch.contiguous_format
