"""Write ``asfda_model.json`` for a model: what the model itself says, plus what the user gives for the rest.

A MONAI bundle states most of it in its configs (``bundle.py``). A TorchScript archive states almost
nothing, but running it once on a blank volume tells its input channels and its output channels, and the
output's numbers tell its activation: channels that are non-negative and sum to one are probabilities,
channels whose exponentials do are log-probabilities, anything else is logits.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from .bundle import bundle_description
from .bundle_config import config_path, is_bundle, read_bundle_config
from .loading import WEIGHTS_FILE, bundle_error, is_torchscript
from .spec import SPEC_FILE, ModelSpec, OutputActivation

# What a user must say when the model does not: spec field -> the flag of ``asfda describe-model``.
FLAGS = {
    "labels": "--labels 0=background,1=NAME,...",
    "spacing": "--spacing X Y Z (or --spacing native)",
    "orientation": "--orientation RAS (or none)",
    "intensity": "--intensity zscore_nonzero|zscore|percentile|range|none",
    "roi_size": "--roi-size X Y Z",
}
TOLERANCE = 1e-3


def output_activation_of(output: torch.Tensor) -> OutputActivation:
    """Tell the activation from the numbers a network returned (B, C, ...)."""
    output = output.detach().double()
    one = torch.ones((), dtype=torch.float64)
    if output.shape[1] == 1:
        inside = bool(((output >= 0) & (output <= 1)).all())
        return OutputActivation.PROBABILITIES if inside else OutputActivation.LOGITS
    if (output >= 0).all() and torch.allclose(output.sum(1), one, atol=TOLERANCE):
        return OutputActivation.PROBABILITIES
    if (output <= 0).all() and torch.allclose(output.exp().sum(1), one, atol=TOLERANCE):
        return OutputActivation.LOG_PROBABILITIES
    return OutputActivation.LOGITS


def probe_torchscript(path: Path, roi_size) -> dict:
    """Input channels (first convolution's weight), output channels and activation (one forward pass)."""
    network = torch.jit.load(str(path), map_location="cpu").eval()
    kernels = [p for p in network.parameters() if p.dim() >= 4]
    if not kernels:
        raise CheckpointError("no convolution weights: cannot tell the input channels", path)
    in_channels = int(kernels[0].shape[1])
    generator = torch.Generator().manual_seed(0)
    volume = torch.rand(1, in_channels, *roi_size, generator=generator)
    try:
        with torch.no_grad():
            output = network(volume)
    except Exception as error:
        raise CheckpointError(
            f"the network does not run on a {tuple(roi_size)} window ({type(error).__name__}); "
            "give a window size it accepts with --roi-size",
            path,
        ) from error
    if not isinstance(output, torch.Tensor) or output.dim() != volume.dim():
        raise CheckpointError("the network does not return one (B, C, x, y, z) tensor", path)
    channels = int(output.shape[1])
    return {
        "in_channels": in_channels,
        "output_channels": max(channels, 2),
        "output_activation": output_activation_of(output),
    }


def describe_model(source: str | Path, given: dict, force: bool = False, trust_code: bool = False) -> Path:
    """Write ``asfda_model.json`` for ``source`` from what it states and ``given`` (spec fields from flags);
    refuse, naming the flags, when something is still unknown."""
    source = Path(source)
    if not source.exists():
        raise CheckpointError("model not found", source)
    folder = source if source.is_dir() else source.parent
    if (folder / SPEC_FILE).is_file() and not force:
        raise CheckpointError(f"{SPEC_FILE} exists already (--force replaces it)", folder)
    fields: dict = {}
    missing: list[str] = []
    if is_bundle(source):
        parser = read_bundle_config(source, trust_code)
        try:
            fields, missing = bundle_description(source, parser)
        except CheckpointError:
            raise
        except Exception as error:  # a reference or expression of the bundle that does not resolve
            raise bundle_error("cannot read the bundle's configs", error, config_path(source)) from error
        missing = [m.split(" ")[0] if m.startswith("roi_size") else m for m in missing]
    else:
        archive = source / WEIGHTS_FILE if source.is_dir() else source
        if not is_torchscript(archive):
            raise CheckpointError(
                "neither a MONAI bundle nor a TorchScript archive: a state dict's asfda_model.json must also "
                "name its network (see the README's models section)",
                archive,
            )
        window = given.get("roi_size") or (64, 64, 64)
        probe = probe_torchscript(archive, window)
        fields = {"in_channels": probe["in_channels"], "output_activation": probe["output_activation"]}
        missing = [name for name in ("labels", "spacing", "orientation", "intensity", "roi_size")]
        labels = given.get("labels")
        if labels is not None and max(labels) + 1 != probe["output_channels"]:
            raise CheckpointError(
                f"--labels names {max(labels) + 1} classes, the network outputs {probe['output_channels']}",
                archive,
            )
    fields.update(given)
    missing = [name for name in missing if name not in given]
    problems = [m for m in missing if not m.startswith("preprocessing transform")]
    untranslatable = [m for m in missing if m.startswith("preprocessing transform")]
    if untranslatable:
        raise CheckpointError(
            f"the bundle's {', '.join(untranslatable)} has no asfda equivalent; preprocess the volumes "
            "yourself or write asfda_model.json by hand",
            source,
        )
    if problems:
        raise CheckpointError(
            "the model does not say " + "; ".join(f"{m} ({FLAGS[m]})" for m in problems), source
        )
    try:
        spec = ModelSpec(**fields)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"invalid description ({error})", source) from error
    return spec.save(folder)
