"""Where the pretrained model keeps its knowledge: the final layer's weights and the BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import nn

CONV_LAYERS = (nn.Conv3d, nn.ConvTranspose3d, nn.Conv2d, nn.ConvTranspose2d)
BATCHNORM_LAYERS = (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d)


def final_layer(network: nn.Module, num_classes: int) -> nn.Module | None:
    """The last convolution that outputs one channel per class: its input is the penultimate feature map g.

    None for TorchScript modules, which take no Python hooks.
    """
    if isinstance(network, torch.jit.ScriptModule):
        return None
    last = None
    for module in network.modules():
        if isinstance(module, CONV_LAYERS) and module.out_channels == num_classes:
            last = module
    return last


def class_weights(layer: nn.Module | None, num_classes: int) -> torch.Tensor:
    """Source class prototypes W_c, one row per class.

    A kernel wider than 1x1x1 is averaged over its taps; without a hookable layer the features are the
    logits themselves and the prototypes are the unit vectors of the classes.
    """
    if layer is None:
        return torch.eye(num_classes)
    weight = layer.weight.detach().float()
    if isinstance(layer, (nn.ConvTranspose3d, nn.ConvTranspose2d)):
        weight = weight.transpose(0, 1)  # stored as (in, out, ...)
    return weight.reshape(weight.shape[0], weight.shape[1], -1).mean(-1).cpu()


def batchnorm_layers(network: nn.Module) -> list[nn.Module]:
    if isinstance(network, torch.jit.ScriptModule):
        return []
    return [
        m
        for m in network.modules()
        if isinstance(m, BATCHNORM_LAYERS) and m.track_running_stats and m.running_mean is not None
    ]


def dropout_layers(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


class ChannelStatistics:
    """Per-channel mean and variance of a layer's input, accumulated over windows."""

    def __init__(self, layer: nn.Module):
        self.layer = layer
        self.total = self.squares = None
        self.count = 0
        self.handle = layer.register_forward_hook(self._record)

    def _record(self, module, inputs, output):
        # Summed in float64 without a float64 copy of the feature map, and kept on the layer's device.
        x = inputs[0].detach()
        dtype = torch.float32 if x.device.type == "mps" else torch.float64
        dims = [0] + list(range(2, x.dim()))
        total, squares = x.sum(dims, dtype=dtype), torch.square(x.to(dtype)).sum(dims)
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += x.numel() // x.shape[1]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target mean, target variance, running mean, running variance), on the host in float64."""
        mean = self.total.double().cpu() / max(self.count, 1)
        self.squares = self.squares.double().cpu()
        variance = (self.squares / max(self.count, 1) - mean * mean).clamp_min(0)
        return (
            mean,
            variance,
            self.layer.running_mean.detach().double().cpu(),
            self.layer.running_var.detach().double().cpu(),
        )

    def remove(self):
        self.handle.remove()
