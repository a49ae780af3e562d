"""Parameter-efficient modes change only what they say, on MONAI networks and on TorchScript."""

import pytest
import torch
from asfda.config import AdaptationMode
from asfda.errors import ASFDAError
from asfda.finetune.ema import make_teacher, update_teacher
from asfda.finetune.peft import decoder_parameters, norm_parameters, select_trainable
from asfda.models.loading import build_network
from asfda.models.spec import NetworkSpec

SEGRESNET = NetworkSpec(
    "SegResNet",
    {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "init_filters": 4,
        "blocks_down": [1, 1, 1],
        "blocks_up": [1, 1],
        "norm": "batch",
    },
)
UNET = NetworkSpec(
    "UNet",
    {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "channels": [4, 8, 16],
        "strides": [2, 2],
        "num_res_units": 1,
        "norm": "batch",
    },
)


def trainable(network):
    return {name for name, p in network.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("spec", [SEGRESNET, UNET], ids=["SegResNet", "UNet"])
def test_modes_select_their_layers(spec):
    network = build_network(spec)
    every = {name for name, _ in network.named_parameters()}
    select_trainable(network, AdaptationMode.NORM)
    norms = trainable(network)
    assert norms and norms < every and all(network.get_parameter(n).dim() == 1 for n in norms)
    select_trainable(network, AdaptationMode.DECODER, 1, (32, 32, 32))
    decoder = trainable(network)
    assert decoder and decoder < every
    first_conv = next(name for name, p in network.named_parameters() if p.dim() == 5)
    assert first_conv not in decoder  # the encoder's first convolution stays frozen
    last_conv = [name for name, p in network.named_parameters() if p.dim() == 5][-1]
    assert last_conv in decoder  # the head learns
    select_trainable(network, AdaptationMode.FULL)
    assert trainable(network) == every


def test_torchscript_decoder_is_split_by_child_names():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.down = torch.nn.Conv3d(1, 4, 3, padding=1)
            self.norm = torch.nn.InstanceNorm3d(4, affine=True)
            self.up = torch.nn.Conv3d(4, 2, 1)

        def forward(self, x):
            return torch.softmax(self.up(self.norm(self.down(x))), 1)

    scripted = torch.jit.script(Net())
    assert decoder_parameters(scripted, 1, (8, 8, 8)) == ["up.weight", "up.bias"]
    assert norm_parameters(scripted) == ["norm.weight", "norm.bias"]
    teacher = make_teacher(scripted)  # a ScriptModule copy (deepcopy crashed here)
    update_teacher(teacher, scripted, 0.5)
    assert not any(p.requires_grad for p in teacher.parameters())
    plain = torch.jit.script(torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1)))
    with pytest.raises(ASFDAError, match="cannot tell this TorchScript network's decoder"):
        select_trainable(plain, AdaptationMode.DECODER)
    with pytest.raises(ASFDAError, match="no such parameters"):
        select_trainable(plain, AdaptationMode.NORM)
