"""One network pass that yields everything a case is scored on.

A model whose spec sets ``whole_volume`` has a volume that fits the device's voxel budget predicted whole,
in one call (padded to a size the network takes): 0.27 s instead of 0.45 s for the 8 overlapping 48^3
windows of a 59x72x59 volume on 2 CPU cores (since the network predicts in channels-last on the CPU,
``models/memory_layout.py``, the windows take about 0.32 s; a single volume gains nothing from it). It is
off by default because it is not the same prediction: overlapping windows average two phases of the
network's downsampling grid, and the committed SegResNet's single pass disagrees with its windows on 4-6 %
of the voxels (target Dice 0.242 against 0.287 on 8 cases).
A larger volume, or a network that refuses the padded size, goes through MONAI's sliding windows.

Besides the blended probabilities, the pass accumulates the class prototypes window by window (from a hook
on the final layer's input) and, on request, the BatchNorm input statistics. Each voxel counts once: a
window's contribution is weighted by 1 / (number of windows covering the voxel), so overlapping windows give
the same prototypes as one pass over the whole volume would for a network with a point-wise head.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from math import prod

import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from ..errors import CancelledError
from ..models.devices import on_device_or_cpu
from ..models.loading import LoadedModel
from ..models.memory_layout import network_layout, running_in_layout
from ..scoring.dkd import PrototypeAccumulator
from ..scoring.entropy import normalized_entropy
from .activation import to_probabilities
from .features import (
    ChannelStatistics,
    ScriptedFeatures,
    batchnorm_layers,
    dropout_layers,
    feature_channels,
    final_layer,
    is_scripted,
)

log = logging.getLogger(__name__)
ProgressCallback = Callable[[int, int], None]  # (windows done, windows in all)
CancelCheck = Callable[[], bool]
# Voxels of input per network call when the batch is chosen automatically: eight 48^3 windows or one 96^3.
WINDOW_BATCH_VOXELS = {"cpu": 2**20, "cuda": 2**23}
_lowered_batch: dict[
    tuple, int
] = {}  # (network id, window) -> batch that fitted after an out-of-memory error
# A whole volume is padded to a multiple of this on each side (capped by the window's own power of two):
# the downsampling levels of U-Net-like networks need it (SegResNet 8, SwinUNETR 32).
MAX_SIZE_DIVISOR = 32
_whole_refused: set[int] = set()  # networks (by id) that failed on a whole volume: windows from then on


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
    """Keep the final layer's input of the current window; optionally drop features (MC dropout).

    A TorchScript layer takes no hooks: its features come from :func:`scripted_features` instead."""
    if layer is None or is_scripted(layer):
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


def size_divisor(window: int) -> int:
    """The largest power of two that divides a window side, at most :data:`MAX_SIZE_DIVISOR`: a size the
    network is known to take when it is a multiple of it."""
    divisor = 1
    while window % (divisor * 2) == 0 and divisor * 2 <= MAX_SIZE_DIVISOR:
        divisor *= 2
    return divisor


def whole_volume_window(shape, model: LoadedModel, device: torch.device) -> tuple[int, ...] | None:
    """The one window that covers the (x, y, z) volume, when the volume needs more than one window of the
    spec's size and the padded volume fits the device's voxel budget; None: use sliding windows."""
    roi = tuple(model.spec.roi_size)
    if id(model.network) in _whole_refused or all(s <= r for s, r in zip(shape, roi)):
        return None
    window = tuple(max(r, -(-s // size_divisor(r)) * size_divisor(r)) for s, r in zip(shape, roi))
    budget = WINDOW_BATCH_VOXELS.get(device.type, WINDOW_BATCH_VOXELS["cpu"])
    return window if prod(window) <= budget else None


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error)
    )


def predict(
    model: LoadedModel, image: torch.Tensor, device: torch.device | str = "cpu", **options
) -> Prediction:
    """:func:`predict_on` the device, or on the CPU for an operator Apple's MPS lacks (with a warning).

    Options as :func:`predict_on`: ``batchnorm_stats``, ``mc_dropout_rate``, ``amp``, ``progress``,
    ``cancelled``, ``sw_batch_size``, ``keep_on_device``, ``whole_volume``."""
    return on_device_or_cpu(lambda on: predict_on(model, image, on, **options), device, "prediction")


def predict_on(
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
    whole_volume: bool | None = None,
) -> Prediction:
    """Probabilities, prototypes and (optionally) BatchNorm statistics of a (C_in, x, y, z) volume.

    With ``whole_volume`` (None: the spec's choice) a volume that fits the budget is predicted in one call
    (:func:`whole_volume_window`); should the network fail on that size, it falls back to windows and keeps
    to them. ``sw_batch_size`` None chooses the windows per call (:func:`window_batch_size`); on a CUDA
    out-of-memory error the batch is halved and the volume predicted again. With ``keep_on_device`` the
    prediction's tensors stay on ``device`` so the scores are computed there too; otherwise they come back
    to the host.
    """
    device = torch.device(device)
    network = model.network.to(device).eval()
    options = (device, batchnorm_stats, mc_dropout_rate, amp, progress, cancelled)
    whole_volume = model.spec.whole_volume if whole_volume is None else whole_volume
    whole = whole_volume_window(image.shape[1:], model, device) if whole_volume else None
    if whole is not None:
        try:
            return _on(_predict_once(model, network, image, whole, 1, *options), keep_on_device)
        except CancelledError:
            raise
        except RuntimeError as error:  # a size the network does not take (or memory): windows from now on
            if device.type == "cuda" and torch.cuda.is_available():
                torch.cuda.empty_cache()
            _whole_refused.add(id(network))
            log.warning("whole-volume pass failed (%s); predicting with sliding windows", error)
    roi = tuple(model.spec.roi_size)
    padded, region = pad_to_window(image.float(), roi)
    _, window_count = window_weights(padded.shape[1:], roi, model.spec.overlap, region)
    requested = sw_batch_size or window_batch_size(model, device, window_count)
    prediction, batch = with_batch_guard(
        lambda batch: _predict_once(model, network, image, roi, batch, *options), requested, device
    )
    if batch < requested:  # later volumes start from the batch that fitted
        _lowered_batch[(id(network), roi)] = batch
    return _on(prediction, keep_on_device)


def _on(prediction: Prediction, keep_on_device: bool) -> Prediction:
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
    model, network, image, roi, batch, device, batchnorm_stats, mc_dropout_rate, amp, progress, cancelled
) -> Prediction:
    """One pass of windows of size ``roi`` (one window when ``roi`` covers the whole volume)."""
    spec = model.spec
    overlap = spec.overlap
    padded, region = pad_to_window(image.float(), roi)
    weights, window_count = window_weights(padded.shape[1:], roi, overlap, region)
    weights = weights.to(device)
    layer = final_layer(network, spec.output_channels)
    accumulator = PrototypeAccumulator(spec.num_classes, feature_channels(layer, spec.num_classes), device)
    scripted = ScriptedFeatures(network, spec.output_channels) if is_scripted(layer) else None
    store: dict = {}
    use_amp = amp and device.type == "cuda"
    windows_done = [0]

    def run_windows(windows, coordinates):
        if cancelled is not None and cancelled():
            raise CancelledError("prediction cancelled")
        with torch.autocast(device_type=device.type, enabled=use_amp):
            if scripted is None:
                logits = network(windows)
            else:
                logits, store["features"] = scripted(windows)
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
        stack.enter_context(running_in_layout(network, network_layout(device, len(roi))))
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
