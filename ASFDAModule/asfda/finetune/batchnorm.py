"""BatchNorm statistics that match whole-volume inference.

Fine-tuning on foreground-oversampled patches in train mode normalises with each small batch's statistics
and moves the running statistics towards patch statistics; inference then runs on whole volumes with a
different mix of tissue and background. Instead, at the start of a round the running statistics are
recomputed on whole target volumes (AdaBN, Li et al. 2016) and then frozen while the weights train
(BatchNorm layers in eval mode), so training and inference normalise the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(network: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in network.modules() if isinstance(m, _BATCHNORM) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(
    network: nn.Module,
    volumes: Iterable[torch.Tensor],
    device: torch.device | str = "cpu",
    multiple: int = 32,
    layers: list[nn.modules.batchnorm._BatchNorm] | None = None,
) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them from ``volumes`` (each (C, D, H, W),
    padded to a multiple of the network's downsampling: 32 serves five poolings, as SwinUNETR and deepbet
    need, and any network of fewer); ``layers``: only these BatchNorm layers (default: all). Returns the
    number of volumes used (0: unchanged)."""
    layers = batchnorm_layers(network) if layers is None else layers
    volumes = list(volumes)
    if not layers or not volumes:
        return 0
    saved = {layer: (layer.momentum, layer.training) for layer in layers}
    was_training = network.training
    network.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average over the passes
        layer.train()
    try:
        for volume in volumes:
            pad = [(-s) % multiple for s in volume.shape[1:]]
            padding = [p for size in reversed(pad) for p in (0, size)]
            padded = torch.nn.functional.pad(volume[None], padding, mode="replicate")[0]
            network(padded[None].to(device))
    finally:
        for layer, (momentum, training) in saved.items():
            layer.momentum = momentum
            layer.train(training)
        network.train(was_training)
    return len(volumes)


def freeze_batchnorm(network: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (running statistics used and not updated); call after
    ``network.train()``. The affine weights still train."""
    for layer in batchnorm_layers(network):
        layer.eval()


def adapted_batchnorm_layers(network: nn.Module, every: bool) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose statistics a round may recompute: those whose scale and shift train (a
    frozen encoder keeps its statistics too), and, when ``every``, also those without scale and shift."""
    return [
        layer
        for layer in batchnorm_layers(network)
        if any(p.requires_grad for p in layer.parameters()) or (every and not list(layer.parameters()))
    ]
