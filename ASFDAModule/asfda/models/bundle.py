"""A MONAI bundle's own description of its inputs and outputs, as a ``ModelSpec``.

The bundle's ``configs/inference.json`` says how it preprocesses (``Orientationd``, ``Spacingd``, an intensity
transform), how it infers (``SlidingWindowInferer``) and what it does to the output (``Activationsd``);
``configs/metadata.json`` names the output channels. Reading them through MONAI's ``ConfigParser`` resolves
the bundle's ``@references`` and ``$expressions`` the way MONAI itself would. A transform we cannot
reproduce, or a field the bundle does not state, is refused by name instead of guessed: a wrong spacing
still "works" and silently costs Dice.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..errors import CheckpointError
from .bundle_config import config_path
from .spec import IntensityNorm, ModelSpec, OutputActivation

log = logging.getLogger(__name__)

# Transforms that load or retype the image: the engine does the same itself.
NEUTRAL = {
    "LoadImage",
    "EnsureChannelFirst",
    "EnsureType",
    "AddChannel",
    "CastToType",
    "ToTensor",
    "ToDevice",
    "ToNumpy",
    "Identity",
    "SaveImage",
    "CopyItems",
    "DeleteItems",
    "SelectItems",
    "Lambda",
}
# Transforms that only crop or pad around the content: sliding windows over the whole volume cover them.
HARMLESS = {"CropForeground", "SpatialPad", "DivisiblePad", "BorderPad"}
# Deterministic intensity transforms, rebuilt from MONAI with the bundle's own arguments.
INTENSITY = {
    "NormalizeIntensity",
    "ScaleIntensity",
    "ScaleIntensityRange",
    "ScaleIntensityRangePercentiles",
    "ClipIntensityPercentiles",
    "ThresholdIntensity",
    "ShiftIntensity",
    "StdShiftIntensity",
    "ScaleIntensityFixedMean",
    "HistogramNormalize",
}
KEY_ARGUMENTS = {"keys", "allow_missing_keys", "meta_keys", "meta_key_postfix"}
REFERENCE = re.compile(r"\$?@([\w#:]+)")


def transform_name(target) -> str:
    """``monai.transforms.Spacingd`` or ``$monai.transforms.Spacingd`` -> ``Spacing`` (the ``d`` dropped)."""
    name = str(target).lstrip("$").split(".")[-1]
    return name[:-1] if name.endswith("d") and name[:-1] else name


def references(raw) -> list[str]:
    """The ids a ``"@x"``, ``"$@x"`` or ``"$@x + @y"`` value joins, [] for anything else."""
    if not isinstance(raw, str):
        return []
    parts = [part.strip() for part in raw.strip().split("+")]
    matches = [
        REFERENCE.fullmatch(part if i == 0 else "@" + part.lstrip("@")) for i, part in enumerate(parts)
    ]
    return [match.group(1) for match in matches] if all(matches) else []


def transform_items(parser, section: str) -> list[tuple[str, str]]:
    """(id, class name) of each transform in ``section`` (a ``Compose`` or a plain list, or a reference)."""
    raw = parser.get(section)
    if raw is None:
        return []
    prefix = section
    if isinstance(raw, dict) and "transforms" in raw:
        raw, prefix = raw["transforms"], f"{section}#transforms"
    if references(raw):
        return [item for name in references(raw) for item in transform_items(parser, name)]
    if not isinstance(raw, list):
        return []
    return [
        (f"{prefix}#{index}", transform_name(item.get("_target_", "")))
        for index, item in enumerate(raw)
        if isinstance(item, dict)
    ]


def argument(parser, item_id: str, name: str, default=None):
    """One constructor argument of a transform, with the bundle's references resolved."""
    if name not in (parser.get(item_id) or {}):
        return default
    return parser.get_parsed_content(f"{item_id}#{name}", instantiate=False)


def transform_arguments(parser, item_id: str) -> dict:
    """A transform's constructor arguments but its keys, references resolved (for rebuilding it)."""
    names = [n for n in (parser.get(item_id) or {}) if not n.startswith("_") and n not in KEY_ARGUMENTS]
    return {name: argument(parser, item_id, name) for name in names}


def single_intensity(step: dict) -> dict | None:
    """The spec fields of one intensity transform that the engine's own normalisations equal."""
    name, kwargs = step["name"], step["kwargs"]
    if name == "NormalizeIntensity" and set(kwargs) <= {"nonzero", "channel_wise"}:
        nonzero = str(kwargs.get("nonzero", False)).lower() == "true"
        return {"intensity": IntensityNorm.ZSCORE_NONZERO if nonzero else IntensityNorm.ZSCORE}
    if name == "ScaleIntensityRange" and {"a_min", "a_max"} <= set(kwargs):
        window = (kwargs["a_min"], kwargs["a_max"], kwargs.get("b_min", 0.0), kwargs.get("b_max", 1.0))
        return {
            "intensity": IntensityNorm.RANGE,
            "intensity_range": tuple(float(v) for v in window),
            "intensity_clip": bool(kwargs.get("clip", False)),
        }
    percentiles = [kwargs.get(k, d) for k, d in (("lower", 0), ("upper", 0), ("b_min", 0), ("b_max", 1))]
    if name == "ScaleIntensityRangePercentiles" and [float(v) for v in percentiles] == [0.5, 99.5, 0, 1]:
        return {"intensity": IntensityNorm.PERCENTILE}
    return None


def intensity_fields(steps: list[dict]) -> dict:
    """The intensity chain as spec fields: one of the engine's normalisations when it equals one, else the
    bundle's own MONAI transforms, rebuilt in order."""
    if not steps:
        return {"intensity": IntensityNorm.NONE}
    if len(steps) == 1 and single_intensity(steps[0]):
        return single_intensity(steps[0])
    return {"intensity": IntensityNorm.TRANSFORMS, "intensity_transforms": steps}


def read_preprocessing(parser, source: Path) -> tuple[dict, list[str]]:
    """Spec fields from the preprocessing transforms, and what could not be read."""
    items = transform_items(parser, "preprocessing")
    if not items:
        return {}, ["spacing", "orientation", "intensity"]
    fields: dict = {"orientation": None, "spacing": None}
    problems: list[str] = []
    steps: list[dict] = []
    for item_id, name in items:
        if name in NEUTRAL:
            continue
        if name in HARMLESS:
            log.info("%s: the bundle's %s is not applied (sliding windows cover the volume)", source, name)
        elif name == "Orientation":
            fields["orientation"] = str(argument(parser, item_id, "axcodes"))
        elif name == "Spacing":
            fields["spacing"] = tuple(float(s) for s in argument(parser, item_id, "pixdim"))
        elif name in INTENSITY:
            steps.append({"name": name, "kwargs": transform_arguments(parser, item_id)})
        elif name.startswith("Rand"):
            problems.append(
                f"preprocessing transform {name} (random: a prediction must not depend on chance)"
            )
        else:
            problems.append(f"preprocessing transform {name}")
    fields.update(intensity_fields(steps))
    return fields, problems


def metadata_input(folder: Path) -> dict:
    """``network_data_format.inputs``' first entry of ``configs/metadata.json`` ({} when absent)."""
    inputs = read_metadata(folder).get("network_data_format", {}).get("inputs", {})
    return next(iter(inputs.values()), {}) if isinstance(inputs, dict) else {}


def read_inferer(parser, folder: Path) -> tuple[dict, list[str]]:
    """The sliding window; a ``SimpleInferer`` runs the network on its stated input shape."""
    inferer = parser.get("inferer", {}) or {}
    target = transform_name(inferer.get("_target_", "")) if isinstance(inferer, dict) else ""
    if target == "SimpleInferer":
        shape = metadata_input(folder).get("spatial_shape")
        if isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) for s in shape):
            return {"roi_size": tuple(shape), "sw_batch_size": 1, "overlap": 0.25}, []
        return {}, ["roi_size (SimpleInferer, and metadata.json states no fixed input shape)"]
    if not isinstance(inferer, dict) or "roi_size" not in inferer:
        return {}, ["roi_size (the inferer's window size)"]
    fields = {"roi_size": tuple(int(s) for s in parser.get_parsed_content("inferer#roi_size"))}
    for key, cast in (("sw_batch_size", int), ("overlap", float)):
        if key in inferer:
            fields[key] = cast(parser.get_parsed_content(f"inferer#{key}"))
    return fields, []


def read_output(parser) -> dict:
    """A bundle's ``network_def`` is a MONAI network, which returns logits; its ``postprocessing`` says how to
    read them: ``Activationsd(sigmoid=True)`` makes each channel a region of its own (multi-label),
    thresholded by ``AsDiscreted(threshold=...)``; softmax or a plain arg-max is one class a channel. A bundle
    whose network ends otherwise says so in ``asfda_model.json``."""
    fields: dict = {"output_activation": OutputActivation.LOGITS}
    for item_id, name in transform_items(parser, "postprocessing"):
        if name == "Activations" and str(argument(parser, item_id, "sigmoid", False)).lower() == "true":
            fields["multi_label"] = True
        elif name == "AsDiscrete" and argument(parser, item_id, "threshold") is not None:
            fields["threshold"] = float(argument(parser, item_id, "threshold"))
    if not fields.get("multi_label"):
        fields.pop("threshold", None)
    return fields


def read_metadata(folder: Path) -> dict:
    """``configs/metadata.json`` ({} when the bundle has none)."""
    path = folder / "configs" / "metadata.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"unreadable bundle metadata ({error})", path) from error
    return data if isinstance(data, dict) else {}


def config_labels(parser) -> dict[int, str]:
    """A config's own ``labels`` ({name: value} as the paediatric CT bundle writes it, or {value: name})."""
    raw = parser.get("labels")
    if not isinstance(raw, dict) or not raw:
        return {}
    try:
        if all(isinstance(v, int) for v in raw.values()):
            return {int(v): str(k) for k, v in raw.items()}
        return {int(k): str(v) for k, v in raw.items()}
    except ValueError:
        return {}


def read_labels(folder: Path, parser) -> tuple[dict[int, str], int]:
    """Channel index -> name (the config's ``labels``, else ``channel_def`` of metadata.json's first output,
    else the network's ``out_channels``) and the input channel count."""
    data_format = read_metadata(folder).get("network_data_format", {})
    outputs = data_format.get("outputs", {})
    channel_def = next(iter(outputs.values()), {}).get("channel_def", {}) if outputs else {}
    labels = config_labels(parser) or {int(k): str(v) for k, v in channel_def.items()}
    in_channels = int(metadata_input(folder).get("num_channels", 1))
    network_def = parser.get("network_def", {}) or {}
    if isinstance(network_def, dict) and "in_channels" in network_def:
        in_channels = int(parser.get_parsed_content("network_def#in_channels"))
    if not labels and isinstance(network_def, dict):
        key = next((k for k in ("out_channels", "num_classes") if k in network_def), None)
        if key:
            out_channels = int(parser.get_parsed_content(f"network_def#{key}"))
            labels = {c: ("background" if c == 0 else f"label_{c}") for c in range(out_channels)}
    return labels, in_channels


def bundle_description(folder: Path, parser) -> tuple[dict, list[str]]:
    """Every spec field the bundle states, and the names of those it does not."""
    labels, in_channels = read_labels(folder, parser)
    fields: dict = {"in_channels": in_channels, **read_output(parser)}
    if fields.get("multi_label") and labels:  # channel c is the region of label value c + 1
        labels = {0: "background", **{c + 1: name for c, name in sorted(labels.items())}}
    missing = [] if labels else ["labels"]
    for part in (read_preprocessing(parser, folder), read_inferer(parser, folder)):
        fields.update(part[0])
        missing.extend(part[1])
    if labels:
        fields["labels"] = labels
    return fields, missing


def spec_from_bundle(folder: Path, parser) -> ModelSpec:
    """The bundle's spec, or a refusal that names what it does not say."""
    fields, missing = bundle_description(folder, parser)
    transforms = [
        m.removeprefix("preprocessing transform ") for m in missing if m.startswith("preprocessing")
    ]
    if transforms:
        raise CheckpointError(
            "the bundle's preprocessing transform " + ", ".join(transforms) + " cannot be reproduced on the "
            "case's grid: preprocess the volumes yourself and describe what remains in asfda_model.json",
            config_path(folder),
        )
    if missing:
        raise CheckpointError(
            "the bundle does not state " + ", ".join(missing) + ": write them into asfda_model.json "
            f"(`asfda describe-model {folder}` with the matching flags does it)",
            config_path(folder),
        )
    return ModelSpec(**fields)
