"""One sliding-window pass that yields everything a case is scored on.

Besides the blended probabilities, the pass accumulates the class prototypes window by window (from a hook
on the final layer's input) and, on request, the BatchNorm input statistics. Each voxel counts once: a
window's contribution is weighted by 1 / (number of windows covering the voxel), so overlapping windows give
the same prototypes as one pass over the whole volume would for a network with a point-wise head.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from ..errors import CancelledError
from ..models.loading import LoadedModel
from ..scoring.dkd import PrototypeAccumulator
from ..scoring.entropy import normalized_entropy
from .activation import to_probabilities
from .features import ChannelStatistics, batchnorm_layers, dropout_layers, final_layer

ProgressCallback = Callable[[int, int], None]  # (windows done, windows in all)
CancelCheck = Callable[[], bool]


@dataclass
class Prediction:
    """A case's prediction in the model's space."""

    probabilities: torch.Tensor  # (C, x, y, z)
    prototypes: torch.Tensor  # (C, K)
    class_mass: torch.Tensor  # (C,) sum_v p_c(v)
    batchnorm_stats: list = field(default_factory=list)

    @cached_property
    def entropy(self) -> torch.Tensor:
        return normalized_entropy(self.probabilities)

    @property
    def labels(self) -> torch.Tensor:
        return self.probabilities.argmax(0)


def pad_to_window(image: torch.Tensor, roi_size) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad (C, *S) so that every side is at least the window; return the slices of the real volume."""
    pads, region = [], []
    for size, window in zip(image.shape[1:], roi_size):
        before = max(window - size, 0) // 2
        after = max(window - size, 0) - before
        pads.append((before, after))
        region.append(slice(before, before + size))
    flat = [amount for pair in reversed(pads) for amount in pair]
    return (F.pad(image, flat) if any(flat) else image), tuple(region)


def window_weights(shape, roi_size, overlap: float, region: tuple[slice, ...]) -> tuple[torch.Tensor, int]:
    """1 / (windows covering each voxel) inside the real volume, 0 in the padding; and the window count.

    A dry run of MONAI's own window placement, so the weights follow whatever grid it uses.
    """
    coverage = torch.zeros(shape)
    windows = []

    def record(window, coordinates):
        for coordinate in coordinates:
            coverage[tuple(coordinate[2:])] += 1
            windows.append(coordinate)
        return torch.zeros((window.shape[0], 1, *window.shape[2:]))

    sliding_window_inference(torch.zeros(1, 1, *shape), roi_size, 1, record, overlap=overlap, with_coord=True)
    weights = torch.zeros(shape)
    weights[region] = 1.0 / coverage[region].clamp_min(1)
    return weights, len(windows)


@contextmanager
def feature_hook(layer, store: dict, dropout_rate: float):
    """Keep the final layer's input of the current window; optionally drop features (MC dropout)."""
    if layer is None:
        yield
        return

    def before(module, inputs):
        if dropout_rate > 0:
            return (F.dropout(inputs[0], dropout_rate, training=True), *inputs[1:])
        return None

    def after(module, inputs, output):
        store["features"] = inputs[0].detach()

    handles = [layer.register_forward_pre_hook(before), layer.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def mc_dropout_mode(network, enabled: bool):
    """Dropout layers in training mode (everything else in eval) for Monte-Carlo dropout passes."""
    layers = dropout_layers(network) if enabled else []
    for layer in layers:
        layer.train()
    try:
        yield bool(layers)
    finally:
        for layer in layers:
            layer.eval()


def predict(
    model: LoadedModel,
    image: torch.Tensor,
    device: torch.device | str = "cpu",
    *,
    batchnorm_stats: bool = False,
    mc_dropout_rate: float = 0.0,
    amp: bool = True,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> Prediction:
    """Probabilities, prototypes and (optionally) BatchNorm statistics of a (C_in, x, y, z) volume."""
    device = torch.device(device)
    spec, network = model.spec, model.network.to(device).eval()
    roi, overlap = tuple(spec.roi_size), spec.overlap
    padded, region = pad_to_window(image.float(), roi)
    weights, window_count = window_weights(padded.shape[1:], roi, overlap, region)
    layer = final_layer(network, spec.num_classes)
    accumulator = PrototypeAccumulator(
        spec.num_classes, layer.in_channels if layer is not None else spec.num_classes
    )
    store: dict = {}
    use_amp = amp and device.type == "cuda"
    windows_done = [0]

    def run_windows(windows, coordinates):
        if cancelled is not None and cancelled():
            raise CancelledError("prediction cancelled")
        with torch.autocast(device_type=device.type, enabled=use_amp):
            logits = network(windows)
        probabilities = to_probabilities(logits, spec.output_activation)
        features = store.get("features", logits).float()
        for index, coordinate in enumerate(coordinates):
            accumulator.add(probabilities[index].cpu(), features[index].cpu(), weights[tuple(coordinate[2:])])
        windows_done[0] += len(coordinates)
        if progress is not None:
            progress(windows_done[0], window_count)
        return probabilities

    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        has_dropout = stack.enter_context(mc_dropout_mode(network, mc_dropout_rate > 0))
        feature_dropout = mc_dropout_rate if (mc_dropout_rate > 0 and not has_dropout) else 0.0
        stack.enter_context(feature_hook(layer, store, feature_dropout))
        recorders = [ChannelStatistics(bn) for bn in batchnorm_layers(network)] if batchnorm_stats else []
        try:
            output = sliding_window_inference(
                padded[None].to(device),
                roi,
                spec.sw_batch_size,
                run_windows,
                overlap=overlap,
                with_coord=True,
            )
        finally:
            for recorder in recorders:
                recorder.remove()
    probabilities = output[0].float().cpu()[(slice(None), *region)]
    return Prediction(
        probabilities,
        accumulator.prototypes(),
        accumulator.mass.float(),
        [recorder.result() for recorder in recorders],
    )
