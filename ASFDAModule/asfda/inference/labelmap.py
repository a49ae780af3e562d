"""A model's label map of a volume, on the volume's own grid."""

from __future__ import annotations

import SimpleITK as sitk
import torch

from ..io.preprocessing import ModelSpaceCase, preprocess_case
from ..io.volumes import labelmap_like
from ..models.loading import LoadedModel
from ..models.spec import ModelSpec
from .predictor import predict


def predict_labelmap(
    model: LoadedModel, image: sitk.Image, device: torch.device | str = "cpu", **options
) -> sitk.Image:
    """Preprocess, predict in the model's space, invert the probabilities onto the volume's grid, arg-max."""
    case = preprocess_case(image, model.spec)
    return source_grid_labelmap(
        predict(model, case.image.as_tensor(), device, **options).probabilities, image, model.spec, case
    )


def source_grid_labelmap(
    probabilities: torch.Tensor, image: sitk.Image, spec: ModelSpec, case: ModelSpaceCase | None = None
) -> sitk.Image:
    """The label map on ``image``'s grid of probabilities predicted on its model-space grid (``case``, the
    preprocessed image, is made again when not given: it is the inverse's record of the resampling)."""
    case = case if case is not None else preprocess_case(image, spec)
    return labelmap_like(case.to_source_grid(probabilities).argmax(0).numpy(), image)
