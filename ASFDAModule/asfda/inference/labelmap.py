"""A model's label map of a volume, on the volume's own grid."""

from __future__ import annotations

import SimpleITK as sitk
import torch

from ..io.preprocessing import preprocess_case
from ..io.volumes import labelmap_like
from ..models.loading import LoadedModel
from .predictor import predict


def predict_labelmap(
    model: LoadedModel, image: sitk.Image, device: torch.device | str = "cpu", **options
) -> sitk.Image:
    """Preprocess, predict in the model's space, invert the probabilities onto the volume's grid, arg-max."""
    case = preprocess_case(image, model.spec)
    probabilities = case.to_source_grid(
        predict(model, case.image.as_tensor(), device, **options).probabilities
    )
    return labelmap_like(probabilities.argmax(0).numpy(), image)
