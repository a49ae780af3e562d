"""``asfda check-bundle``: what the engine does with a MONAI bundle (works, or refused and why).

The bundle is read as ``asfda create`` reads it (its configs, its trust mode), its network built and, when
``models/model.pt`` is there, its weights loaded; then one window of noise with the model's input channels
goes through the network on the CPU, and its output channels are checked against the labels. A bundle
without weights is checked with the network's random initialisation: the plumbing is the same.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ASFDAError, CheckpointError
from .bundle_config import BundleCodeRefused, is_bundle, read_bundle_config, root_message
from .loading import WEIGHTS_FILE, apply_weights, build_bundle_network, bundle_spec, load_state_dict
from .spec import ModelSpec


@dataclass
class BundleCheck:
    """The outcome for one bundle: ``works`` with the spec, or the refusal's reason."""

    bundle: Path
    works: bool
    reason: str
    spec: ModelSpec | None = None
    needs_trust: bool = False

    def summary(self) -> str:
        if not self.works:
            return f"refused: {self.reason}"
        spec = self.spec
        output = (
            f"{spec.output_channels} sigmoid regions" if spec.multi_label else f"{spec.num_classes} classes"
        )
        intensity = spec.intensity.value
        if spec.intensity_transforms:
            intensity = " + ".join(step["name"] for step in spec.intensity_transforms)
        return (
            f"works{' with --trust-bundle-code' if self.needs_trust else ''}: {spec.in_channels} input "
            f"channel(s), {output}, spacing {spec.spacing or 'native'}, "
            f"orientation {spec.orientation or 'native'}, intensity {intensity}, "
            f"window {tuple(spec.roi_size)}; {self.reason}"
        )


def run_one_window(network: torch.nn.Module, spec: ModelSpec, window) -> torch.Tensor:
    volume = torch.randn(1, spec.in_channels, *window, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return network.eval()(volume)


def check_bundle(folder: Path, trust_code: bool = False, max_window: int | None = None) -> BundleCheck:
    """Read, build, load and run the bundle as a session would; never raises for the bundle's faults.

    ``max_window`` caps each side of the window the check runs (BraTS's 240 x 240 x 160 takes gigabytes on
    a CPU); the session still uses the bundle's own."""
    folder = Path(folder)
    if not is_bundle(folder):
        return BundleCheck(folder, False, "not a MONAI bundle (configs/inference.json or .yaml missing)")
    try:
        parser = read_bundle_config(folder, trust_code)
        network = build_bundle_network(folder, parser, trust_code)
        spec = bundle_spec(folder, parser)
        weights = folder / "models" / WEIGHTS_FILE
        if weights.is_file():
            apply_weights(network, load_state_dict(weights), weights)
        note = "weights loaded" if weights.is_file() else "no models/model.pt: random weights"
        window = tuple(min(side, max_window or side) for side in spec.roi_size)
        if window != tuple(spec.roi_size):
            note += f", checked on a {window} window"
        output = run_one_window(network, spec, window)
    except BundleCodeRefused as refusal:
        return BundleCheck(folder, False, str(refusal).split(": ", 1)[-1], needs_trust=True)
    except ASFDAError as error:
        return BundleCheck(folder, False, str(error).split(": ", 1)[-1])
    except Exception as error:  # the network's own forward pass: MONAI's or the bundle's message
        return BundleCheck(folder, False, f"the network does not run on one window ({root_message(error)})")
    if not isinstance(output, torch.Tensor) or output.shape[1] != spec.output_channels:
        channels = getattr(output, "shape", [None, None])[1]
        return BundleCheck(
            folder, False, f"the network outputs {channels} channels, the labels need {spec.output_channels}"
        )
    return BundleCheck(folder, True, note, spec, needs_trust=trust_code)


def run_check_bundle(args: argparse.Namespace) -> int:
    """Print one line a bundle; exit 0 when all work, 2 when one is refused."""
    outcomes = []
    for folder in args.bundles:
        outcome = check_bundle(folder, args.trust_bundle_code, args.max_window)
        print(f"{folder}: {outcome.summary()}", flush=True)
        outcomes.append(outcome)
    if any(not o.works for o in outcomes):
        raise CheckpointError(f"{sum(not o.works for o in outcomes)} of {len(outcomes)} bundles refused")
    return 0
