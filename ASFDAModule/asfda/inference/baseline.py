"""The scoring path as it was before the speed work (main at 1ce17f7, 2026-11-22), frozen.

Not used by the loop. It is the baseline that ``asfda speed`` times in the same run as today's path, and the
reference the equivalence test compares today's scores with: one window per network call, every window's
probabilities and features copied to the host, BatchNorm statistics summed from float64 copies, the window
weights recomputed per volume, and the class-balanced entropy found class by class.
"""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..config import AsdConfig
from ..models.loading import LoadedModel
from ..scoring.asd import AsdResult, top_fraction_mean
from ..scoring.dkd import PrototypeAccumulator
from ..scoring.region import adaptive_foreground, entropy_threshold
from .features import ScriptedFeatures, batchnorm_layers, feature_channels, final_layer, is_scripted
from .predictor import Prediction, feature_hook, pad_to_window, window_weights


class BaselineChannelStatistics:
    """Per-channel mean and variance of a layer's input from float64 copies of each window."""

    def __init__(self, layer):
        self.layer, self.total, self.squares, self.count = layer, None, None, 0
        self.handle = layer.register_forward_hook(self._record)

    def _record(self, module, inputs, output):
        x = inputs[0].detach().double()
        dims = [0] + list(range(2, x.dim()))
        total, squares = x.sum(dims).cpu(), (x * x).sum(dims).cpu()
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += x.numel() // x.shape[1]

    def result(self):
        mean = self.total / max(self.count, 1)
        variance = (self.squares / max(self.count, 1) - mean * mean).clamp_min(0)
        running = (
            self.layer.running_mean.detach().double().cpu(),
            self.layer.running_var.detach().double().cpu(),
        )
        return (mean, variance, *running)


def baseline_predict(
    model: LoadedModel, image: torch.Tensor, device="cpu", *, batchnorm_stats: bool = False
) -> Prediction:
    """The old ``predict``: the model's own sliding-window batch, host-side prototype accumulation."""
    device = torch.device(device)
    spec, network = model.spec, model.network.to(device).eval()
    roi, overlap = tuple(spec.roi_size), spec.overlap
    padded, region = pad_to_window(image.float(), roi)
    weights, _ = window_weights(padded.shape[1:], roi, overlap, region)
    layer = final_layer(network, spec.num_classes)
    accumulator = PrototypeAccumulator(spec.num_classes, feature_channels(layer, spec.num_classes))
    # TorchScript: the features the scoring path takes now (the old path took the outputs), so scores match
    scripted = ScriptedFeatures(network, spec.num_classes) if is_scripted(layer) else None
    store: dict = {}

    def run_windows(windows, coordinates):
        with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
            if scripted is None:
                logits = network(windows)
            else:
                logits, store["features"] = scripted(windows)
        probabilities = torch.softmax(logits.float(), dim=1)
        features = store.get("features", logits).float()
        for index, coordinate in enumerate(coordinates):
            accumulator.add(probabilities[index].cpu(), features[index].cpu(), weights[tuple(coordinate[2:])])
        return probabilities

    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(feature_hook(layer, store, 0.0))
        recorders = (
            [BaselineChannelStatistics(bn) for bn in batchnorm_layers(network)] if batchnorm_stats else []
        )
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
                recorder.handle.remove()
    probabilities = output[0].float().cpu()[(slice(None), *region)]
    return Prediction(
        probabilities, accumulator.prototypes(), accumulator.mass.float(), [r.result() for r in recorders]
    )


def baseline_nearest_class(labels: torch.Tensor) -> torch.Tensor:
    from scipy import ndimage

    labels_np = labels.cpu().numpy()
    _, indices = ndimage.distance_transform_edt(labels_np == 0, return_indices=True)
    return torch.from_numpy(labels_np[tuple(indices)])


def baseline_asd(
    probabilities: torch.Tensor, entropy: torch.Tensor, config: AsdConfig | None = None
) -> AsdResult:
    """The old ASD: class-balanced means found one class at a time on the host."""
    config = config or AsdConfig()
    labels = probabilities.argmax(0)
    threshold = entropy_threshold(entropy, config.threshold_rule, config.histogram_bins)
    region = adaptive_foreground(labels, entropy, config.dilation_voxels, threshold)
    confidence_map = probabilities.max(0).values
    if not region.any():
        top = top_fraction_mean(entropy, config.fallback_top_fraction)
        return AsdResult(top, threshold, 0, True, {}, float(confidence_map.mean()))
    if (labels > 0).any():
        owner = baseline_nearest_class(labels)
        per_class = {}
        for value in torch.unique(owner[region]).tolist():
            if value != 0:
                per_class[int(value)] = float(entropy[region & (owner == value)].mean())
        score = float(np.mean(list(per_class.values())))
    else:
        per_class, score = {}, float(entropy[region].mean())
    return AsdResult(
        score, threshold, int(region.sum()), False, per_class, float(confidence_map[region].mean())
    )


def baseline_score_case(case_id, model_version, prediction: Prediction, gap, asd_config=None):
    """The old ``score_case`` with the old ASD."""
    from ..scoring.case_scores import CaseScores
    from ..scoring.dkd import embedding

    asd = baseline_asd(prediction.probabilities, prediction.entropy, asd_config)
    return CaseScores(
        case_id=case_id,
        model_version=model_version,
        asd=asd.score,
        confidence=asd.confidence,
        no_foreground_found=asd.no_foreground_found,
        mean_entropy=float(prediction.entropy.mean()),
        knowledge_gap=gap.total,
        cosine_gap=gap.cosine,
        batchnorm_kl=gap.batchnorm_kl,
        embedding=embedding(prediction.prototypes).tolist(),
    )
