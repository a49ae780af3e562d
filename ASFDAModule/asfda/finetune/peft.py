"""Parameter-efficient adaptation: which of a pretrained network's weights a round may change.

A foundation model's encoder carries what it learnt from thousands of scans; a handful of target cases
should move as little of it as does the job. ``norm`` trains only the normalisation layers' scale and
shift (a few thousand numbers, the classic test-time adaptation choice); ``decoder`` freezes everything up
to the bottleneck. Low-rank adapters (LoRA) are not offered: ``peft``, the maintained library, requires
transformers, accelerate and huggingface_hub, far more than this engine should carry for one option.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import AdaptationMode
from ..errors import ASFDAError

NORM_LAYERS = (
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "GroupNorm",
    "LayerNorm",
)
DECODER_WORDS = ("up", "dec", "out", "final", "head")


def layer_type(module: nn.Module) -> str:
    """A layer's class name, also for TorchScript modules (which keep it as ``original_name``)."""
    return getattr(module, "original_name", type(module).__name__)


def norm_parameters(network: nn.Module) -> list[str]:
    return [
        f"{name}.{parameter_name}" if name else parameter_name
        for name, module in network.named_modules()
        if layer_type(module) in NORM_LAYERS
        for parameter_name, _ in module.named_parameters(recurse=False)
    ]


def execution_order(network: nn.Module, in_channels: int, roi_size) -> list[tuple[str, int]]:
    """(name, output voxels) of each layer holding weights, in the order a forward pass runs them."""
    order: list[tuple[str, int]] = []

    def record(name):
        def hook(module, inputs, output):
            output = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(output, torch.Tensor) and output.dim() > 2:
                order.append((name, output.shape[2:].numel()))

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in network.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    was_training = network.training
    try:
        network.eval()
        parameter = next(network.parameters())
        with torch.no_grad():
            network(torch.zeros(1, in_channels, *roi_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        network.train(was_training)
        for handle in handles:
            handle.remove()
    return order


def decoder_parameters(network: nn.Module, in_channels: int, roi_size) -> list[str]:
    """The parameters of the layers that run after the coarsest feature map (the bottleneck).

    Told by a forward pass for Python networks; a TorchScript network takes no hooks, so its top-level
    children are split at the first whose name says decoder (``up``, ``dec``, ...).
    """
    if isinstance(network, torch.jit.ScriptModule):
        children = [name for name, _ in network.named_children()]
        start = next((i for i, n in enumerate(children) if any(w in n.lower() for w in DECODER_WORDS)), None)
        if start is None:
            raise ASFDAError(f"cannot tell this TorchScript network's decoder among {children}: use norm")
        modules = set(children[start:])
        return [name for name, _ in network.named_parameters() if name.split(".")[0] in modules]
    order = execution_order(network, in_channels, roi_size)
    coarsest = min(size for _, size in order)
    last_bottleneck = max(i for i, (_, size) in enumerate(order) if size == coarsest)
    decoder = {name for name, _ in order[last_bottleneck + 1 :]}
    return [
        f"{name}.{parameter_name}" if name else parameter_name
        for name, module in network.named_modules()
        if name in decoder
        for parameter_name, _ in module.named_parameters(recurse=False)
    ]


def select_trainable(
    network: nn.Module, mode: AdaptationMode, in_channels: int = 1, roi_size=(32, 32, 32)
) -> list[nn.Parameter]:
    """Set ``requires_grad`` for ``mode`` and return the parameters to optimise."""
    mode = AdaptationMode(mode)
    parameters = dict(network.named_parameters())
    if mode is AdaptationMode.FULL:
        chosen = set(parameters)
    elif mode is AdaptationMode.NORM:
        chosen = set(norm_parameters(network))
    else:
        chosen = set(decoder_parameters(network, in_channels, roi_size))
    if not chosen:
        raise ASFDAError(f"adaptation {mode.value!r}: this network has no such parameters; use full")
    for name, parameter in parameters.items():
        parameter.requires_grad_(name in chosen)
    return [parameters[name] for name in parameters if name in chosen]


def freeze_statistics(network: nn.Module) -> None:
    """Normalisation layers whose weights are frozen keep their running statistics (eval mode), so a frozen
    encoder stays what it was; call after ``network.train()``."""
    for module in network.modules():
        weights = list(module.parameters())
        if layer_type(module) in NORM_LAYERS and weights and not any(p.requires_grad for p in weights):
            module.eval()


def parameter_groups(
    network: nn.Module,
    trainable: list[nn.Parameter],
    encoder_factor: float,
    learning_rate: float,
    in_channels: int = 1,
    roi_size=(32, 32, 32),
) -> list[dict]:
    """The optimiser's parameter groups: one at ``learning_rate``, or with ``encoder_factor`` != 1 the
    encoder's trainable weights at ``encoder_factor`` x the rate, then the decoder's at the rate."""
    if encoder_factor == 1.0:
        return [{"params": trainable, "lr": learning_rate}]
    decoder = set(decoder_parameters(network, in_channels, roi_size))
    chosen = {id(p) for p in trainable}
    named = [(name, p) for name, p in network.named_parameters() if id(p) in chosen]
    encoder = [p for name, p in named if name not in decoder]
    groups = [{"params": [p for name, p in named if name in decoder], "lr": learning_rate}]
    return ([{"params": encoder, "lr": learning_rate * encoder_factor}] if encoder else []) + groups
