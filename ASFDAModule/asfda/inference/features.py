"""Where the pretrained model keeps its knowledge: the final layer's weights and the BatchNorm statistics.

A TorchScript network takes no Python hooks, so its final layer's input is reached through its graph instead:
:class:`ScriptedFeatures` compiles a copy of the network's inlined ``forward`` that also returns the input of
the last convolution with one output channel per class (the same penultimate feature map g that a hook gives
for an ``nn.Module``). With logits as features and unit vectors as prototypes, a confident network's cosine
gap is near 0 on every domain (measured on deepbet: 4e-5 to 8e-5 on T1, T2 and another head).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

CONV_LAYERS = (nn.Conv3d, nn.ConvTranspose3d, nn.Conv2d, nn.ConvTranspose2d)
BATCHNORM_LAYERS = (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d)


def final_layer(network: nn.Module, num_classes: int) -> nn.Module | None:
    """The last convolution that outputs one channel per class: its input is the penultimate feature map g.

    For a TorchScript network, the scripted submodule of the last such convolution in its graph; None where
    there is none (a network whose classes come from something other than a convolution).
    """
    if isinstance(network, torch.jit.ScriptModule):
        found = scripted_final_convolution(network, num_classes)
        return None if found is None else found[0]
    last = None
    for module in network.modules():
        if isinstance(module, CONV_LAYERS) and module.out_channels == num_classes:
            last = module
    return last


def is_scripted(layer: nn.Module | None) -> bool:
    return isinstance(layer, torch.jit.ScriptModule)


def _is_transposed(layer: nn.Module) -> bool:
    if is_scripted(layer):
        return layer.original_name.startswith("ConvTranspose")
    return isinstance(layer, (nn.ConvTranspose3d, nn.ConvTranspose2d))


def class_weights(layer: nn.Module | None, num_classes: int, multi_label=None) -> torch.Tensor:
    """Source class prototypes W_c, one row per class.

    A kernel wider than 1x1x1 is averaged over its taps; without a final convolution the features are the
    class probabilities themselves and the prototypes are the unit vectors of the classes. For sigmoid
    multi-label outputs (``MultiLabel``) a label's row is the direction its log-probability grows along
    at g = 0, half the sum of the weights of the channels on there minus those off (log sigmoid(x) is
    -log 2 + x / 2 to first order).
    """
    if layer is None:
        return torch.eye(num_classes)
    weight = layer.weight.detach().float()
    if _is_transposed(layer):
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


def feature_channels(layer: nn.Module | None, num_classes: int) -> int:
    """K, the channels of the features g: the final layer's input channels (the classes without one)."""
    return num_classes if layer is None else class_weights(layer, num_classes).shape[1]


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


# ------------------------------------------------------------------------------------------- TorchScript

_CONVOLUTIONS = {"aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d"}
_TRANSPOSED = {"aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d"}


def _attribute_path(value: torch._C.Value) -> list[str]:
    """``['decoder', 'head', 'weight']`` for a value read by a chain of ``prim::GetAttr`` from ``self``."""
    names, node = [], value.node()
    while node.kind() == "prim::GetAttr":
        names.append(node.s("name"))
        node = node.inputsAt(0).node()
    return names[::-1]


def _submodule(network: torch.jit.ScriptModule, path: list[str]):
    module = network
    for name in path:
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def scripted_final_convolution(network: torch.jit.ScriptModule, num_classes: int, graph=None):
    """(submodule, graph node) of the last convolution in the inlined ``forward`` whose weights belong to a
    submodule with one output channel per class, or None. ``graph``: the inlined graph to search."""
    graph = graph if graph is not None else network.inlined_graph
    last = None
    for node in graph.nodes():
        if node.kind() not in _CONVOLUTIONS | _TRANSPOSED:
            continue
        path = _attribute_path(node.inputsAt(1))
        layer = _submodule(network, path[:-1]) if path and path[-1] == "weight" else None
        if layer is None or not hasattr(layer, "weight"):
            continue
        if class_weights(layer, num_classes).shape[0] == num_classes:
            last = (layer, node)
    return last


class ScriptedFeatures:
    """Calls a TorchScript network and returns (output, features g): a compiled copy of its inlined
    ``forward`` with the final convolution's input as a second output. The copy reads the network's own
    parameters, so fine-tuning and ``.to(device)`` act on it too."""

    def __init__(self, network: torch.jit.ScriptModule, num_classes: int):
        self.network = network
        compiled = _compiled.setdefault(network, {})
        if num_classes not in compiled:
            compiled[num_classes] = _compile(network, num_classes)
        self.function = compiled[num_classes]

    def __call__(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.function(self.network._c, windows)


# network -> {classes: compiled copy}; weak, so a model version that is let go takes its copy with it.
_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compile(network: torch.jit.ScriptModule, num_classes: int):
    graph = network.inlined_graph  # a copy: the network's own forward is untouched
    found = scripted_final_convolution(network, num_classes, graph)
    if found is None:
        raise ValueError("the TorchScript network has no final convolution with one channel per class")
    features = found[1].inputsAt(0)
    output = next(graph.outputs())
    pair = graph.create("prim::TupleConstruct", [output, features])
    pair.insertAfter(output.node())
    pair.output().setType(torch._C.TupleType([output.type(), features.type()]))
    graph.eraseOutput(0)
    graph.registerOutput(pair.output())
    return torch._C._create_function_from_graph("forward_with_features", graph)
