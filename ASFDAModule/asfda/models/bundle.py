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
from pathlib import Path

from ..errors import CheckpointError
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


def transform_name(target) -> str:
    """``monai.transforms.Spacingd`` or ``$monai.transforms.Spacingd`` -> ``Spacing`` (the ``d`` dropped)."""
    name = str(target).lstrip("$").split(".")[-1]
    return name[:-1] if name.endswith("d") and name[:-1] else name


def transform_items(parser, section: str) -> list[tuple[str, str]]:
    """(id, class name) of each transform in ``section`` (a ``Compose`` or a plain list)."""
    raw = parser.get(section)
    if raw is None:
        return []
    prefix = section
    if isinstance(raw, dict) and "transforms" in raw:
        raw, prefix = raw["transforms"], f"{section}#transforms"
    if isinstance(raw, str):  # "@preprocessing_transforms" style indirection
        return transform_items(parser, raw.lstrip("@"))
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


def read_preprocessing(parser, source: Path) -> tuple[dict, list[str]]:
    """Spec fields from the preprocessing transforms, and what could not be read."""
    items = transform_items(parser, "preprocessing")
    if not items:
        return {}, ["spacing", "orientation", "intensity"]
    fields: dict = {"orientation": None, "spacing": None, "intensity": IntensityNorm.NONE}
    problems: list[str] = []
    for item_id, name in items:
        if name in NEUTRAL:
            continue
        if name in HARMLESS:
            log.info("%s: the bundle's %s is not applied (sliding windows cover the volume)", source, name)
        elif name == "Orientation":
            fields["orientation"] = str(argument(parser, item_id, "axcodes"))
        elif name == "Spacing":
            fields["spacing"] = tuple(float(s) for s in argument(parser, item_id, "pixdim"))
        elif name == "NormalizeIntensity" and argument(parser, item_id, "subtrahend") is None:
            nonzero = bool(argument(parser, item_id, "nonzero", False))
            fields["intensity"] = IntensityNorm.ZSCORE_NONZERO if nonzero else IntensityNorm.ZSCORE
        elif name == "ScaleIntensityRange":
            fields["intensity"] = IntensityNorm.RANGE
            fields["intensity_range"] = tuple(
                float(argument(parser, item_id, key, default))
                for key, default in (("a_min", None), ("a_max", None), ("b_min", 0.0), ("b_max", 1.0))
            )
            fields["intensity_clip"] = bool(argument(parser, item_id, "clip", False))
        elif name == "ScaleIntensityRangePercentiles" and [
            float(argument(parser, item_id, k, d)) for k, d in (("lower", 0), ("upper", 0), ("b_min", 0))
        ] + [float(argument(parser, item_id, "b_max", 1))] == [0.5, 99.5, 0.0, 1.0]:
            fields["intensity"] = IntensityNorm.PERCENTILE
        else:
            problems.append(f"preprocessing transform {name}")
    return fields, problems


def read_inferer(parser) -> tuple[dict, list[str]]:
    roi = parser.get("inferer", {}) or {}
    if not isinstance(roi, dict) or "roi_size" not in roi:
        return {}, ["roi_size (the inferer's window size)"]
    fields = {"roi_size": tuple(int(s) for s in parser.get_parsed_content("inferer#roi_size"))}
    for key, cast in (("sw_batch_size", int), ("overlap", float)):
        if key in roi:
            fields[key] = cast(parser.get_parsed_content(f"inferer#{key}"))
    return fields, []


def read_output_activation(parser) -> OutputActivation:
    """A bundle's ``network_def`` is a MONAI network, which returns logits (its ``postprocessing`` applies
    ``Activationsd``); a bundle whose network ends otherwise says so in ``asfda_model.json``."""
    return OutputActivation.LOGITS


def read_labels(folder: Path, parser) -> tuple[dict[int, str], int]:
    """Label values -> names (``channel_def`` of the first output) and the input channel count."""
    labels: dict[int, str] = {}
    in_channels = 1
    metadata_path = folder / "configs" / "metadata.json"
    if metadata_path.is_file():
        try:
            data_format = json.loads(metadata_path.read_text()).get("network_data_format", {})
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"unreadable bundle metadata ({error})", metadata_path) from error
        outputs = data_format.get("outputs", {})
        channel_def = next(iter(outputs.values()), {}).get("channel_def", {})
        labels = {int(k): str(v) for k, v in channel_def.items()}
        inputs = data_format.get("inputs", {})
        in_channels = int(next(iter(inputs.values()), {}).get("num_channels", 1))
    if not labels:
        network_def = parser.get("network_def", {}) or {}
        out_channels = network_def.get("out_channels") if isinstance(network_def, dict) else None
        if out_channels:
            out_channels = int(parser.get_parsed_content("network_def#out_channels"))
            labels = {c: ("background" if c == 0 else f"label_{c}") for c in range(out_channels)}
    return labels, in_channels


def bundle_description(folder: Path, parser) -> tuple[dict, list[str]]:
    """Every spec field the bundle states, and the names of those it does not."""
    labels, in_channels = read_labels(folder, parser)
    fields: dict = {"in_channels": in_channels, "output_activation": read_output_activation(parser)}
    missing = [] if labels else ["labels"]
    for part in (read_preprocessing(parser, folder), read_inferer(parser)):
        fields.update(part[0])
        missing.extend(part[1])
    if labels:
        fields["labels"] = labels
    return fields, missing


def spec_from_bundle(folder: Path, parser) -> ModelSpec:
    """The bundle's spec, or a refusal that names what it does not say."""
    fields, missing = bundle_description(folder, parser)
    if missing:
        raise CheckpointError(
            "the bundle does not state " + ", ".join(missing) + ": write them into asfda_model.json "
            f"(`asfda describe-model {folder}` with the matching flags does it)",
            folder / "configs" / "inference.json",
        )
    return ModelSpec(**fields)
