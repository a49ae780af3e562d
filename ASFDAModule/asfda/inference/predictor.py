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
from functools import cached_property, lru_cache
from math import prod

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
# Voxels of input per network call when the batch is chosen automatically: eight 48^3 windows or one 96^3.
WINDOW_BATCH_VOXELS = {"cpu": 2**20, "cuda": 2**23}
_lowered_batch: dict[
    tuple, int
] = {}  # (network id, window) -> batch that fitted after an out-of-memory error


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

    def to(self, device: torch.device | str) -> Prediction:
        """The same prediction on ``device`` (BatchNorm statistics are on the host already)."""
        return Prediction(
            self.probabilities.to(device),
            self.prototypes.to(device),
            self.class_mass.to(device),
            self.batchnorm_stats,
        )


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

    A dry run of MONAI's own window placement, so the weights follow whatever grid it uses. Volumes of a pool
    share a few shapes, so the result is kept per shape (do not modify the returned tensor).
    """
    bounds = tuple((s.start, s.stop) for s in region)
    return _window_weights(tuple(shape), tuple(roi_size), float(overlap), bounds)


@lru_cache(maxsize=32)
def _window_weights(shape, roi_size, overlap, bounds) -> tuple[torch.Tensor, int]:
    region = tuple(slice(*b) for b in bounds)
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


def window_batch_size(model: LoadedModel, device: torch.device, window_count: int) -> int:
    """Windows per network call: as many as fit a voxel budget (at least the spec's own), never more than
    the volume has, and no more than what last fitted this network after an out-of-memory error."""
    spec = model.spec
    budget = WINDOW_BATCH_VOXELS.get(device.type, WINDOW_BATCH_VOXELS["cpu"])
    batch = max(spec.sw_batch_size, budget // prod(spec.roi_size), 1)
    batch = min(batch, max(window_count, 1))
    return min(batch, _lowered_batch.get((id(model.network), tuple(spec.roi_size)), batch))


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error)
    )


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
    sw_batch_size: int | None = None,
    keep_on_device: bool = False,
) -> Prediction:
    """Probabilities, prototypes and (optionally) BatchNorm statistics of a (C_in, x, y, z) volume.

    ``sw_batch_size`` None chooses the windows per call (:func:`window_batch_size`); on a CUDA out-of-memory
    error the batch is halved and the volume predicted again. With ``keep_on_device`` the prediction's tensors
    stay on ``device`` so the scores are computed there too; otherwise they come back to the host.
    """
    device = torch.device(device)
    spec, network = model.spec, model.network.to(device).eval()
    roi = tuple(spec.roi_size)
    padded, region = pad_to_window(image.float(), roi)
    _, window_count = window_weights(padded.shape[1:], roi, spec.overlap, region)
    requested = sw_batch_size or window_batch_size(model, device, window_count)
    prediction, batch = with_batch_guard(
        lambda batch: _predict_once(
            model,
            network,
            padded,
            region,
            device,
            batch,
            batchnorm_stats,
            mc_dropout_rate,
            amp,
            progress,
            cancelled,
        ),
        requested,
        device,
    )
    if batch < requested:  # later volumes start from the batch that fitted
        _lowered_batch[(id(network), roi)] = batch
    return prediction if keep_on_device else prediction.to("cpu")


def with_batch_guard(run: Callable[[int], Prediction], batch: int, device: torch.device):
    """``run(batch)``, halving the batch after each CUDA out-of-memory error; (result, batch that fitted)."""
    while True:
        try:
            return run(batch), batch
        except RuntimeError as error:
            if device.type != "cuda" or batch <= 1 or not is_out_of_memory(error):
                raise
        # The failed pass's tensors went with the error; free cached blocks, retry with half the windows.
        batch //= 2
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _predict_once(
    model, network, padded, region, device, batch, batchnorm_stats, mc_dropout_rate, amp, progress, cancelled
) -> Prediction:
    spec = model.spec
    roi, overlap = tuple(spec.roi_size), spec.overlap
    weights, window_count = window_weights(padded.shape[1:], roi, overlap, region)
    weights = weights.to(device)
    layer = final_layer(network, spec.output_channels)
    accumulator = PrototypeAccumulator(
        spec.num_classes, layer.in_channels if layer is not None else spec.num_classes, device
    )
    store: dict = {}
    use_amp = amp and device.type == "cuda"
    windows_done = [0]

    def run_windows(windows, coordinates):
        if cancelled is not None and cancelled():
            raise CancelledError("prediction cancelled")
        with torch.autocast(device_type=device.type, enabled=use_amp):
            logits = network(windows)
        probabilities = to_probabilities(logits, spec.activation)
        features = store.get("features", logits if logits.shape[1] == spec.num_classes else probabilities)
        features = features.float()
        shares = torch.stack([weights[tuple(coordinate[2:])] for coordinate in coordinates])
        accumulator.add_batch(probabilities, features, shares)
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
                batch,
                run_windows,
                overlap=overlap,
                with_coord=True,
            )
        finally:
            for recorder in recorders:
                recorder.remove()
    probabilities = output[0].float()[(slice(None), *region)]
    return Prediction(
        probabilities,
        accumulator.prototypes(),
        accumulator.mass.float(),
        [recorder.result() for recorder in recorders],
    )
