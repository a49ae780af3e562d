"""Loading a pretrained segmentation model: a MONAI bundle, a MONAI network by name, or TorchScript.

Weights are read with ``torch.load(..., weights_only=True)``: a checkpoint is data, never code to run.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from .bundle import spec_from_bundle
from .bundle_config import (
    bundle_on_import_path,
    code_refusal,
    config_path,
    is_bundle,
    read_bundle_config,
    root_message,
)
from .devices import resolve_device  # noqa: F401 - where callers have always found it
from .spec import SPEC_FILE, ModelSpec, NetworkSpec

WEIGHTS_FILE = "model.pt"
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".pt", ".pth")


class ModelKind(str, Enum):
    BUNDLE = "bundle"
    NETWORK = "network"
    TORCHSCRIPT = "torchscript"


@dataclass
class LoadedModel:
    """A network ready for inference, with the spec that says how to feed it."""

    network: nn.Module
    spec: ModelSpec
    kind: ModelKind
    source: Path

    @property
    def scripted(self) -> bool:
        return self.kind is ModelKind.TORCHSCRIPT


def build_network(network: NetworkSpec, source: Path | None = None) -> nn.Module:
    """A MONAI network (``monai.networks.nets``) by class name, e.g. SwinUNETR, SegResNet, UNet, DynUNet."""
    from monai.networks import nets

    factory = getattr(nets, network.name, None)
    if factory is None or not isinstance(factory, type) or not issubclass(factory, nn.Module):
        raise CheckpointError(f"unknown MONAI network {network.name!r}", source)
    try:
        return factory(**network.kwargs)
    except TypeError as error:
        raise CheckpointError(
            f"cannot build {network.name} with {network.kwargs}: {error}", source
        ) from error


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint; also accepts the ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers."""
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and runtime errors all mean the same to the user
        raise CheckpointError(
            f"not a loadable weights-only checkpoint ({type(error).__name__}: {error})", path
        ) from error
    for key in ("state_dict", "model", "network"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError("expected a state dict of tensors", path)
    return data


def apply_weights(network: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """Load weights strictly, with a message that lists what does not fit."""
    weights = {key.removeprefix("module."): value for key, value in weights.items()}  # DataParallel saves
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        summary = str(error).splitlines()[0]
        detail = "; ".join(line.strip() for line in str(error).splitlines()[1:4])
        raise CheckpointError(f"weights do not fit the network ({summary} {detail})", path) from error
    return network


def load_network_folder(folder: Path) -> LoadedModel:
    """A folder with ``asfda_model.json`` (network spec) and ``model.pt`` (state dict)."""
    spec = ModelSpec.load(folder / SPEC_FILE)
    if spec.network is None:
        raise CheckpointError("the model spec names no network", folder / SPEC_FILE)
    network = build_network(spec.network, folder / SPEC_FILE)
    apply_weights(network, load_state_dict(folder / WEIGHTS_FILE), folder / WEIGHTS_FILE)
    return LoadedModel(network.eval(), spec, ModelKind.NETWORK, folder)


def bundle_spec(folder: Path, parser) -> ModelSpec:
    """Labels and preprocessing of a bundle: ``asfda_model.json`` if present, else the bundle's configs."""
    if (folder / SPEC_FILE).is_file():
        return ModelSpec.load(folder / SPEC_FILE)
    try:
        return spec_from_bundle(folder, parser)
    except CheckpointError:
        raise
    except Exception as error:  # a reference or expression of the bundle that does not resolve
        raise bundle_error("cannot read the bundle's configs", error, config_path(folder)) from error


def bundle_error(what: str, error: Exception, path: Path | None) -> CheckpointError:
    """A refusal to run the bundle's code as it is, else MONAI's own innermost message."""
    return code_refusal(error) or CheckpointError(f"{what} ({root_message(error)})", path)


def build_bundle_network(folder: Path, parser, trust_code: bool) -> nn.Module:
    """The bundle's ``network_def``, built by MONAI (the bundle's ``scripts/`` importable when trusted)."""
    path = config_path(folder)
    if parser.get("network_def") is None:
        raise CheckpointError("the bundle defines no network_def", path)
    try:
        with bundle_on_import_path(folder, trust_code):
            network = parser.get_parsed_content("network_def", instantiate=True)
    except Exception as error:  # the bundle's own config may raise anything while instantiating
        raise bundle_error("cannot build the bundle's network_def", error, path) from error
    if not isinstance(network, nn.Module):
        raise CheckpointError(f"network_def is a {type(network).__name__}, not a network", path)
    return network


def load_bundle(folder: Path, trust_code: bool = False) -> LoadedModel:
    """A MONAI bundle: ``configs/inference.json`` (or ``.yaml``) defines ``network_def``, ``models/model.pt``
    the weights. Without ``trust_code`` none of the bundle's code runs (``bundle_config.py``)."""
    parser = read_bundle_config(folder, trust_code)
    network = build_bundle_network(folder, parser, trust_code)
    weights_path = folder / "models" / WEIGHTS_FILE
    apply_weights(network, load_state_dict(weights_path), weights_path)
    return LoadedModel(network.eval(), bundle_spec(folder, parser), ModelKind.BUNDLE, folder)


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive, told by content: a zip whose record holds ``code/`` and ``constants.pkl``
    (``torch.save`` archives, state dicts included, have neither)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(name.endswith("/constants.pkl") or "/code/" in name for name in names)


def load_torchscript(path: Path) -> LoadedModel:
    """A TorchScript file with an ``asfda_model.json`` beside it (TorchScript carries no labels)."""
    spec_path = path.parent / SPEC_FILE
    spec = ModelSpec.load(spec_path)
    try:
        network = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise CheckpointError(f"not a TorchScript archive ({type(error).__name__})", path) from error
    return LoadedModel(network.eval(), spec, ModelKind.TORCHSCRIPT, path)


def load_model(source: str | Path, trust_code: bool = False) -> LoadedModel:
    """Load whatever ``source`` is: a bundle folder, a network folder, or a TorchScript file.

    ``trust_code`` lets a bundle's config run its expressions and its ``scripts/`` (``--trust-bundle-code``).
    """
    source = Path(source)
    if not source.exists():
        raise CheckpointError("model not found", source)
    if source.is_dir():
        if is_bundle(source):
            return load_bundle(source, trust_code)
        weights = source / WEIGHTS_FILE
        if weights.is_file():
            return load_torchscript(weights) if is_torchscript(weights) else load_network_folder(source)
        scripted = sorted(
            p for p in source.iterdir() if p.suffix in TORCHSCRIPT_SUFFIXES and is_torchscript(p)
        )
        if scripted:
            return load_torchscript(scripted[0])
        raise CheckpointError("folder holds no bundle, no model.pt and no TorchScript file", source)
    if source.name == SPEC_FILE:
        return load_model(source.parent, trust_code)
    if is_torchscript(source):
        return load_torchscript(source)
    if source.suffix in TORCHSCRIPT_SUFFIXES:
        raise CheckpointError(
            "not a TorchScript archive (a state dict needs a folder with an asfda_model.json naming it)",
            source,
        )
    raise CheckpointError("unknown model format", source)
