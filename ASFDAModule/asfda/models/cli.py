"""``asfda describe-model``: write a model's ``asfda_model.json``, asking (by flag) only for what it lacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckpointError
from .bundle_config import TRUST_FLAG, is_bundle
from .describe import describe_model
from .spec import IntensityNorm, ModelSpec, OutputActivation


def parse_labels(text: str) -> dict[int, str]:
    """``0=background,1=brain`` -> {0: "background", 1: "brain"}."""
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        labels = {int(value): name.strip() for value, name in pairs}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected VALUE=NAME,... got {text!r}") from error
    labels.setdefault(0, "background")
    return labels


def parse_regions(text: str) -> dict[int, list[int]]:
    """``1=0+1,2=1,4=0+1+2`` -> {1: [0, 1], 2: [1], 4: [0, 1, 2]}."""
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return {int(value): [int(c) for c in channels.split("+")] for value, channels in pairs}
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected VALUE=CHANNEL+CHANNEL,... got {text!r}") from error


def given_fields(args) -> dict:
    """The spec fields the user stated on the command line (absent flags are not stated)."""
    given: dict = {}
    if args.labels:
        given["labels"] = args.labels
    if args.spacing:
        given["spacing"] = None if args.spacing == ["native"] else tuple(float(s) for s in args.spacing)
    if args.orientation:
        given["orientation"] = None if args.orientation.lower() == "none" else args.orientation.upper()
    if args.intensity:
        given["intensity"] = IntensityNorm(args.intensity)
    if args.intensity_range:
        given["intensity_range"] = tuple(args.intensity_range)
    if args.roi_size:
        given["roi_size"] = tuple(args.roi_size)
    if args.regions:
        given["regions"] = args.regions
    if args.output_activation:
        given["output_activation"] = OutputActivation(args.output_activation)
    return given


CODE_NOTE = (
    "note: a MONAI bundle's config is code (its $expressions are Python, its _target_s any importable "
    "callable); asfda evaluates only plain-data expressions and MONAI's own components unless "
    f"{TRUST_FLAG} is given"
)


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        TRUST_FLAG,
        dest="trust_bundle_code",
        action="store_true",
        help="run the bundle's own code: its config's Python expressions and its scripts/ folder (off by "
        "default: a bundle's config is code; give this only for a bundle you trust)",
    )


def run_describe_model(args) -> int:
    try:
        given = given_fields(args)
    except ValueError as error:
        raise CheckpointError(str(error), args.model) from error
    if is_bundle(Path(args.model)):
        print(CODE_NOTE + (" (given: the bundle's code may run)" if args.trust_bundle_code else ""))
    path = describe_model(args.model, given, force=args.force, trust_code=args.trust_bundle_code)
    spec = ModelSpec.load(path)
    output = spec.output_activation.value
    if spec.multi_label:
        output = f"sigmoid regions (threshold {spec.threshold}, {spec.in_channels} input channels)"
    print(
        f"wrote {path}: {len(spec.labels)} labels, spacing {spec.spacing}, orientation {spec.orientation}, "
        f"intensity {spec.intensity.value}, window {spec.roi_size}, output {output}"
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "describe-model",
        help="inspect a MONAI bundle or a TorchScript file and write its asfda_model.json",
        description="Reads what the model states (a bundle's configs; a TorchScript network's input and "
        "output channels and output activation, from one forward pass) and takes the rest from the flags; "
        "names the flags still needed when something is unknown. A bundle's config is code: without "
        f"{TRUST_FLAG} only its plain-data expressions and MONAI's own components are evaluated.",
    )
    parser.add_argument(
        "model", help="bundle folder, TorchScript file, or folder holding a TorchScript model.pt"
    )
    parser.add_argument("--labels", type=parse_labels, help="0=background,1=NAME,...")
    parser.add_argument("--spacing", nargs="+", help="X Y Z in mm, or 'native' (keep each volume's own)")
    parser.add_argument("--orientation", help="axis codes such as RAS, or 'none'")
    parser.add_argument("--intensity", choices=[n.value for n in IntensityNorm])
    parser.add_argument(
        "--intensity-range", type=float, nargs=4, metavar=("A_MIN", "A_MAX", "B_MIN", "B_MAX")
    )
    parser.add_argument("--roi-size", type=int, nargs=3, help="sliding-window size in voxels")
    parser.add_argument(
        "--regions",
        type=parse_regions,
        help="sigmoid multi-label models: label value -> output channels on there, e.g. BraTS "
        "1=0+1,2=1,4=0+1+2 (default: label c+1 is channel c alone)",
    )
    parser.add_argument(
        "--output-activation",
        choices=[a.value for a in OutputActivation],
        help="override what the forward pass suggests",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing asfda_model.json")
    add_trust_flag(parser)
    parser.set_defaults(func=run_describe_model)

    from .check import run_check_bundle

    parser = subparsers.add_parser(
        "check-bundle",
        help="say what the engine does with MONAI bundles: works, or refused and why",
        description="Reads each bundle as `asfda create` would, builds its network, loads models/model.pt "
        "when present (else random weights) and runs one window through it on the CPU. " + CODE_NOTE + ".",
    )
    parser.add_argument("bundles", nargs="+", type=Path, help="bundle folders")
    parser.add_argument(
        "--max-window",
        type=int,
        help="run the check on windows of at most this side (the session is unchanged)",
    )
    add_trust_flag(parser)
    parser.set_defaults(func=run_check_bundle)
