"""The label maps a session keeps on the cases' own grids: the predictions an annotator opens, per model
version, and their ``.seg.nrrd`` copies with segment names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..inference.labelmap import predict_labelmap, source_grid_labelmap
from ..inference.predictor import Prediction
from ..io.volumes import add_segment_metadata, read_volume, write_volume
from ..models.spec import IntensityNorm
from .store import SessionStore


def segmentation_path(labelmap_path: Path) -> Path:
    """Where ``segmentation_file`` keeps the ``.seg.nrrd`` of a label map."""
    return labelmap_path.with_name(labelmap_path.name.replace(".nii.gz", ".seg.nrrd"))


class PredictionFiles:
    """The predicted label map files of an :class:`~asfda.session.session.AdaptationSession` (a mixin of it:
    it uses the session's ``model()``, ``pretrained()``, ``image()`` and ``labels``)."""

    store: SessionStore
    device: torch.device

    def write_prediction(self, case_id: str, output: str | Path | None = None) -> Path:
        """The active model's label map of a case, on the case's own grid (cached per model version)."""
        version = self.store.active_version
        cached = self.store.predicted_label_path(case_id, version)
        if not cached.is_file():
            write_volume(predict_labelmap(self.model(), self.image(case_id), self.device), cached)
        if output is None:
            return cached
        labelmap = read_volume(cached)
        if str(output).endswith(".seg.nrrd"):
            add_segment_metadata(labelmap, self.labels)
        return write_volume(labelmap, output)

    def save_labelmap(self, case_id: str, version: str, prediction: Prediction) -> Path:
        """Keep the label map of a scoring pass on the case's grid, so that the annotator's prediction is
        there at once (0.03 s a 59x72x59 volume on top of the pass, against a pass of its own)."""
        path = self.store.predicted_label_path(case_id, version)
        if not path.is_file():
            image = self.image(case_id)
            # the inverse needs only the spatial steps' record: skip the intensity normalisation
            spec = replace(self.pretrained().spec, intensity=IntensityNorm.NONE)
            write_volume(source_grid_labelmap(prediction.probabilities, image, spec), path)
        return path

    def segmentation_file(self, labelmap_path: Path) -> Path:
        """A ``.seg.nrrd`` (with segment names) beside a label map, written once."""
        output = segmentation_path(labelmap_path)
        if not output.is_file():
            labelmap = read_volume(labelmap_path)
            add_segment_metadata(labelmap, self.labels)
            write_volume(labelmap, output)
        return output

    def saved_prediction(self, case_id: str) -> tuple[str, Path] | None:
        """The freshest label map a scoring pass kept for the case: the active version's, else, while the
        active version has not scored the case yet, the newest earlier version's (with its version)."""
        active = self.store.active_version
        versions = [active] + [v.id for v in reversed(self.store.versions()) if v.id != active]
        if self.store.scores_path(active, case_id).is_file():
            versions = versions[:1]
        for version in versions:
            path = self.store.predicted_label_path(case_id, version)
            if path.is_file():
                return version, path
        return None
