"""What the engine needs to know about a segmentation model besides its weights.

A model folder holds ``asfda_model.json`` (this spec) and ``model.pt`` (a state dict), or a TorchScript file,
or a MONAI bundle (``configs/inference.json`` + ``models/model.pt``) with an optional ``asfda_model.json``
beside it to override the preprocessing read from the bundle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from ..errors import CheckpointError

SPEC_FILE = "asfda_model.json"


class IntensityNorm(str, Enum):
    """How voxel intensities are normalised before the network sees them."""

    ZSCORE_NONZERO = "zscore_nonzero"  # MR: mean/std over non-zero voxels
    ZSCORE = "zscore"  # mean/std over all voxels
    PERCENTILE = "percentile"  # robust 0.5-99.5 percentile scaling to [0, 1]
    RANGE = "range"  # CT windows: intensity_range = (a_min, a_max, b_min, b_max), as ScaleIntensityRanged
    NONE = "none"
    TRANSFORMS = "transforms"  # a bundle's own chain of MONAI intensity transforms, in intensity_transforms


class OutputActivation(str, Enum):
    """The last operation a network applies to its output channels (``inference/activation.py`` uses it)."""

    LOGITS = "logits"  # nothing: the engine applies softmax (sigmoid for one channel)
    PROBABILITIES = "probabilities"  # softmax (or sigmoid) already applied, e.g. deepbet
    LOG_PROBABILITIES = "log_probabilities"  # log-softmax already applied


@dataclass(frozen=True)
class MultiLabel:
    """Sigmoid outputs, one channel a region (BraTS: tumour core, whole tumour, enhancing tumour), which may
    overlap. ``regions`` maps each label value of the label map to the channels that are on there (BraTS's
    labels: 1 -> core and whole, 2 -> whole, 4 -> all three); ``threshold`` is the bundle's own."""

    regions: tuple[tuple[int, tuple[int, ...]], ...]
    threshold: float = 0.5
    num_classes: int = 2


@dataclass
class NetworkSpec:
    """A MONAI network by class name and constructor arguments (``monai.networks.nets``)."""

    name: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class ModelSpec:
    """Labels, preprocessing and inference settings of one model.

    ``labels`` maps label value to structure name; value 0 is background. ``spacing`` is the voxel size in mm
    the model works at (None keeps the volume's own), ``orientation`` the axis codes (None keeps it).
    """

    labels: dict[int, str]
    network: NetworkSpec | None = None
    in_channels: int = 1
    spacing: tuple[float, float, float] | None = None
    orientation: str | None = "RAS"
    intensity: IntensityNorm = IntensityNorm.ZSCORE_NONZERO
    intensity_range: tuple[float, float, float, float] | None = None
    intensity_clip: bool = True
    intensity_transforms: list[dict] | None = None  # [{"name": "ScaleIntensity", "kwargs": {...}}, ...]
    roi_size: tuple[int, int, int] = (64, 64, 64)
    sw_batch_size: int = 1
    overlap: float = 0.25
    output_activation: OutputActivation = OutputActivation.LOGITS
    # Predict a volume that fits the voxel budget in one pass instead of overlapping windows. Off unless the
    # model says so: the committed SegResNet disagrees with its own 48^3 windows on 5 % of the voxels.
    whole_volume: bool = False
    multi_label: bool = False  # sigmoid outputs, one channel a region (see MultiLabel)
    threshold: float = 0.5  # a region is on where its sigmoid exceeds this (the bundle's AsDiscreted)
    regions: dict[int, list[int]] | None = (
        None  # label value -> channels on there; None: label c+1 = channel c
    )

    def __post_init__(self):
        self.intensity = IntensityNorm(self.intensity)
        self.output_activation = OutputActivation(self.output_activation)
        if self.intensity is IntensityNorm.RANGE and (
            self.intensity_range is None or len(self.intensity_range) != 4
        ):
            raise ValueError("intensity 'range' needs intensity_range = [a_min, a_max, b_min, b_max]")
        if self.regions is not None and set(self.regions) != set(self.foreground_labels):
            raise ValueError("regions must name the channels of every foreground label, and only those")
        if self.intensity is IntensityNorm.TRANSFORMS and not self.intensity_transforms:
            raise ValueError("intensity 'transforms' needs intensity_transforms = [{name, kwargs}, ...]")

    @property
    def activation(self) -> OutputActivation | MultiLabel:
        """What ``inference/activation.py`` needs to turn the network's output into class probabilities."""
        if not self.multi_label:
            return self.output_activation
        regions = self.regions or {value: [value - 1] for value in self.foreground_labels}
        return MultiLabel(
            tuple((int(v), tuple(int(c) for c in channels)) for v, channels in sorted(regions.items())),
            float(self.threshold),
            self.num_classes,
        )

    @property
    def output_channels(self) -> int:
        """Channels the network outputs: one a class, or one a region for multi-label outputs."""
        if not self.multi_label:
            return self.num_classes
        return max((c for _, channels in self.activation.regions for c in channels), default=0) + 1

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    @property
    def foreground_labels(self) -> list[int]:
        return [value for value in sorted(self.labels) if value != 0]

    def to_json(self) -> dict:
        data = asdict(self)
        data["labels"] = {str(k): v for k, v in self.labels.items()}
        data["intensity"] = self.intensity.value
        data["output_activation"] = self.output_activation.value
        if self.regions is not None:
            data["regions"] = {str(k): list(v) for k, v in self.regions.items()}
        return data

    @classmethod
    def from_json(cls, data: dict, source: str | Path | None = None) -> ModelSpec:
        try:
            labels = {int(k): str(v) for k, v in data["labels"].items()}
            if 0 not in labels:
                labels[0] = "background"
            network = data.get("network")
            return cls(
                labels=labels,
                network=NetworkSpec(network["name"], dict(network.get("kwargs", {}))) if network else None,
                in_channels=int(data.get("in_channels", 1)),
                spacing=tuple(float(s) for s in data["spacing"]) if data.get("spacing") else None,
                orientation=data.get("orientation", "RAS"),
                intensity=IntensityNorm(data.get("intensity", IntensityNorm.ZSCORE_NONZERO.value)),
                intensity_range=(
                    tuple(float(v) for v in data["intensity_range"]) if data.get("intensity_range") else None
                ),
                intensity_clip=bool(data.get("intensity_clip", True)),
                intensity_transforms=data.get("intensity_transforms"),
                roi_size=tuple(int(s) for s in data.get("roi_size", (64, 64, 64))),
                sw_batch_size=int(data.get("sw_batch_size", 1)),
                overlap=float(data.get("overlap", 0.25)),
                output_activation=OutputActivation(
                    data.get("output_activation", OutputActivation.LOGITS.value)
                ),
                whole_volume=bool(data.get("whole_volume", False)),
                multi_label=bool(data.get("multi_label", False)),
                threshold=float(data.get("threshold", 0.5)),
                regions=(
                    {int(k): [int(c) for c in v] for k, v in data["regions"].items()}
                    if data.get("regions")
                    else None
                ),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"invalid model spec ({error!r})", source) from error

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SPEC_FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILE
        if not path.is_file():
            raise CheckpointError("model spec not found", path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"unreadable model spec ({error})", path) from error
        return cls.from_json(data, path)
