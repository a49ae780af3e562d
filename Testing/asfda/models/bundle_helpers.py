"""A MONAI bundle written in MONAI's configuration format (references and expressions included)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def write_bundle(
    folder: Path,
    network_kwargs: dict,
    labels: dict[int, str],
    roi_size=(32, 32, 32),
    spacing=(6.0, 6.0, 6.0),
    preprocessing: list | None = None,
    network: str = "UNet",
    weights: dict | None = None,
) -> Path:
    from monai.networks import nets

    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    if preprocessing is None:
        preprocessing = [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "@image_key", "pixdim": "@spacing", "mode": "bilinear"},
            {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True, "channel_wise": True},
            {"_target_": "EnsureTyped", "keys": "@image_key"},
        ]
    config = {
        "bundle_root": ".",
        "image_key": "image",
        "spacing": list(spacing),
        "network_def": {"_target_": network, **network_kwargs},
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": "$[" + ", ".join(str(s) for s in roi_size) + "]",
            "sw_batch_size": 1,
            "overlap": 0.25,
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [{"_target_": "Activationsd", "keys": "pred", "softmax": True}],
        },
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    metadata = {
        "network_data_format": {
            "inputs": {"image": {"num_channels": 1}},
            "outputs": {"pred": {"channel_def": {str(k): v for k, v in labels.items()}}},
        }
    }
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if weights is None:
        weights = getattr(nets, network)(**network_kwargs).state_dict()
    torch.save(weights, folder / "models" / "model.pt")
    return folder
