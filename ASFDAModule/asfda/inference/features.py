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


def class_weights(layer: nn.Module | None, num_classes: int, multi_label=None) -> torch.Tensor:
    """Source class prototypes W_c, one row per class.

    A kernel wider than 1x1x1 is averaged over its taps; without a hookable layer the features are the
    class probabilities themselves and the prototypes are the unit vectors of the classes. For sigmoid
    multi-label outputs (``MultiLabel``) a label's row is the direction its log-probability grows along
    at g = 0, half the sum of the weights of the channels on there minus those off (log sigmoid(x) is
    -log 2 + x / 2 to first order).
    """
    if layer is None:
        return torch.eye(num_classes)
    weight = layer.weight.detach().float()
    if isinstance(layer, (nn.ConvTranspose3d, nn.ConvTranspose2d)):
        weight = weight.transpose(0, 1)  # stored as (in, out, ...)
    weight = weight.reshape(weight.shape[0], weight.shape[1], -1).mean(-1).cpu()
    if multi_label is None:
        return weight
    rows = torch.zeros(num_classes, weight.shape[1])
    for value, channels in (*multi_label.regions, (0, ())):
        signs = -torch.ones(weight.shape[0])
        signs[list(channels)] = 1.0
        rows[value] = 0.5 * (signs[:, None] * weight).sum(0)
    return rows


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
    """Per-channel mean and variance of a layer's input, accumulated over windows.

    Each network call contributes its own mean and variance (``torch.var_mean``, one pass in the input's
    precision, no float64 copy of the feature map); calls are merged in float64 with Chan et al.'s pairwise
    update, so the result equals the variance over all windows at once. The sums stay on the layer's device.
    """

    def __init__(self, layer: nn.Module):
        self.layer = layer
        self.mean = self.m2 = None
        self.count = 0
        self.handle = layer.register_forward_hook(self._record)

    def _record(self, module, inputs, output):
        x = inputs[0].detach()
        dims = [0] + list(range(2, x.dim()))
        count = x.numel() // x.shape[1]
        dtype = torch.float32 if x.device.type == "mps" else torch.float64
        variance, mean = torch.var_mean(x.float(), dims, correction=0)
        mean, m2 = mean.to(dtype), variance.to(dtype) * count
        if self.mean is None:
            self.mean, self.m2, self.count = mean, m2, count
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target mean, target variance, running mean, running variance), on the host in float64."""
        return (
            self.mean.double().cpu(),
            (self.m2.double().cpu() / max(self.count, 1)).clamp_min(0),
            self.layer.running_mean.detach().double().cpu(),
            self.layer.running_var.detach().double().cpu(),
        )

    def remove(self):
        self.handle.remove()
