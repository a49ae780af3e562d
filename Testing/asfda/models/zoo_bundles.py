"""Model-zoo bundle fixtures (``bundles/``, see its NOTICE.md) made runnable: random weights, small cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

FIXTURES = Path(__file__).parent / "bundles"
DINTS_CODE = "search_code_18590.pt"


def write_dints_code(folder: Path) -> None:
    """The architecture code a DiNTS search writes, here from a random search of the fixture's space."""
    from monai.networks.nets import TopologySearch

    torch.manual_seed(0)
    node_a, arch_code_a, arch_code_c, _ = TopologySearch(
        channel_mul=0.25, num_blocks=2, num_depths=3, use_downsample=True
    ).decode()
    codes = {"node_a": node_a, "arch_code_a": arch_code_a, "arch_code_c": arch_code_c}
    torch.save({k: np.asarray(v) for k, v in codes.items()}, folder / "models" / DINTS_CODE)  # as published


def zoo_bundle(tmp_path: Path, name: str, edit=None, seed: int = 0) -> Path:
    """A copy of the fixture ``name`` with random weights in ``models/model.pt``; ``edit(config)`` changes
    its JSON inference config first."""
    from asfda.models.bundle_config import read_bundle_config
    from asfda.models.loading import build_bundle_network

    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    (folder / "models").mkdir()
    if edit is not None:
        path = folder / "configs" / "inference.json"
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(json.dumps(config, indent=4))
    if "dints" in name:
        write_dints_code(folder)
    torch.manual_seed(seed)
    network = build_bundle_network(folder, read_bundle_config(folder, trust_code=True), trust_code=True)
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


def sphere_volume(path: Path, shape=(20, 20, 16), spacing=(6.0, 6.0, 6.0), channels: int = 1) -> Path:
    """A bright sphere in noise, (x, y, z) ``shape`` voxels of ``spacing`` mm, ``channels`` components."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.arange(s) - s / 2 for s in shape[::-1]), indexing="ij")
    inside = (x**2 + y**2 + z**2) < (min(shape) / 3) ** 2
    array = (rng.normal(100, 10, shape[::-1]) + 200 * inside).astype(np.float32)
    if channels > 1:
        array = np.stack([array * (1 + c / 4) for c in range(channels)], axis=-1)
        image = sitk.GetImageFromArray(array, isVector=True)
    else:
        image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def sphere_mask(path: Path, image_path: Path) -> Path:
    """Label 1 on the bright sphere of ``sphere_volume``, on its grid."""
    image = sitk.ReadImage(str(image_path))
    array = sitk.GetArrayFromImage(image)
    array = array[..., 0] if array.ndim == 4 else array
    mask = sitk.GetImageFromArray((array > 200).astype(np.uint8))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(path))
    return path
